"""The handshake and one write through the vhost-device-console command (pty backend).

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_console_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """DEVICE_READY gets PORT_ADD; guest bytes reach the printed pty."""
    base, log = tmp / "device.sock", tmp / "device.log"
    argv = [*daemon, "--socket-path", str(base), "--backend", "pty"]
    with (
        daemon_process(argv, log=log, sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        match = re.search(r"redirected to (/dev/pts/\d+)", log.read_text())
        assert match
        fd = os.open(match.group(1), os.O_RDWR | os.O_NOCTTY)
        try:
            _rx, tx, ctrl_rx, ctrl_tx = frontend.start_device(4, 64)
            assert frontend.ram is not None
            ram = frontend.ram
            dst = ram.alloc(64)
            ctrl_rx.driver.add([(dst, 64, True)])
            ctrl_rx.publish()
            for queue, data in ((ctrl_tx, struct.pack("<IHH", 0, 0, 1)), (tx, b"hello")):
                src = ram.alloc(len(data))
                ram.memory.write(src, data)
                queue.driver.add([(src, len(data), False)])
                queue.publish()
                queue.wait_used(1)
            ctrl_rx.wait_used(1)
            assert ram.memory.read(dst, 8) == struct.pack("<IHH", 0, 1, 0)  # PORT_ADD
            assert os.read(fd, 16) == b"hello"
        finally:
            os.close(fd)


def test_console_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_console.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
