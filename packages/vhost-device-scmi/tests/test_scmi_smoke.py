"""One command through the core's frontend to the vhost-device-scmi command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_scmi_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

SENSOR_READING_GET = (0x15 << 10) | 0x6


def smoke(daemon: list[str], tmp: Path) -> None:
    """READING_GET of the fake accelerometer; the daemon then exits 0 on SIGTERM."""
    sock = tmp / "scmi.sock"
    argv = [*daemon, "--socket-path", str(sock), "-d", "fake"]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[sock]),
        Frontend.connect(sock) as frontend,
    ):
        cmdq, _ = frontend.start_device(2, 64)
        assert frontend.ram is not None
        request = struct.pack("<III", SENSOR_READING_GET, 0, 0)
        src, dst = frontend.ram.alloc(len(request)), frontend.ram.alloc(128)
        frontend.ram.memory.write(src, request)
        head = cmdq.driver.add([(src, len(request), False), (dst, 128, True)])
        cmdq.publish()
        assert cmdq.wait_used(1) == [(head, 8 + 3 * 16)]
        header, status = struct.unpack("<Ii", frontend.ram.memory.read(dst, 8))
        assert (header, status) == (SENSOR_READING_GET, 0)


def test_scmi_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_scmi.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
