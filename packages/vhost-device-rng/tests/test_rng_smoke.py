"""One request through the core's frontend to the vhost-device-rng command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_rng_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """Entropy for one 64-byte buffer; the daemon then exits 0 on SIGTERM."""
    base = tmp / "rng.sock"
    argv = [*daemon, "--socket-path", str(base)]
    with (
        daemon_process(argv, log=tmp / "rng.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        (queue,) = frontend.start_device(1, 64)
        assert frontend.ram is not None
        gpa = frontend.ram.alloc(64)
        head = queue.driver.add([(gpa, 64, True)])
        queue.publish()
        assert queue.wait_used(1) == [(head, 64)]
        assert len(set(frontend.ram.memory.read(gpa, 64))) > 16


def test_rng_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_rng.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
