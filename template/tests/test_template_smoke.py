"""One request through the core's frontend to the vhost-device-template command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_template_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages. `xtask new` copies
it; make its request one your device answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """One loopback request; the daemon then exits 0 on SIGTERM."""
    base = tmp / "device.sock"
    argv = [*daemon, "--socket-path", str(base)]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        (queue,) = frontend.start_device(1, 64)
        assert frontend.ram is not None
        src, dst = frontend.ram.alloc(5), frontend.ram.alloc(16)
        frontend.ram.memory.write(src, b"hello")
        head = queue.driver.add([(src, 5, False), (dst, 16, True)])
        queue.publish()
        assert queue.wait_used(1) == [(head, 5)]
        assert frontend.ram.memory.read(dst, 5) == b"hello"


def test_template_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_template.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
