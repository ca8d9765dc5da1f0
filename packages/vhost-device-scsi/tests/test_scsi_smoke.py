"""One command through the core's frontend to the vhost-device-scsi command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_scsi_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """READ(10) of the first block of an image file; the daemon then exits 0 on SIGTERM."""
    image = tmp / "disk.img"
    image.write_bytes(b"vhost-device-scsi".ljust(512, b"!") + bytes(1 << 20))
    sock = tmp / "scsi.sock"
    argv = [*daemon, "--socket-path", str(sock), str(image)]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[sock]),
        Frontend.connect(sock) as frontend,
    ):
        queues = frontend.start_device(3, 128)
        assert frontend.ram is not None
        mem, ram = frontend.ram.memory, frontend.ram
        cdb = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0).ljust(32, b"\0")
        header = bytes((1, 0, 0x40, 0)) + bytes(4) + struct.pack("<QBBB", 1, 0, 0, 0) + cdb
        req, resp, data = ram.alloc(len(header)), ram.alloc(108), ram.alloc(512)
        mem.write(req, header)
        head = queues[2].driver.add(
            [(req, len(header), False), (resp, 108, True), (data, 512, True)]
        )
        queues[2].publish()
        assert queues[2].wait_used(1) == [(head, 108 + 512)]
        assert mem.read(resp, 12) == bytes(12)  # no sense, no residual, GOOD, OK
        assert mem.read(data, 512) == image.read_bytes()[:512]


def test_scsi_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_scsi.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
