"""Developer tasks of the vhost-device-py workspace, run as `python3 xtask <task>`.

Like upstream's `cargo xtask`, but needing nothing beyond a stock python3: everything up to
the creation of `.venv` uses the standard library only, so a fresh Debian machine (or CI) can
start from `python3 xtask test`.
"""
