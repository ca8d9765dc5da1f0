"""One request through the core's frontend to the vhost-device-video command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_video_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

QUERY_CAPABILITY, OK_QUERY_CAPABILITY, INPUT = 0x100, 0x201, 0x100


def smoke(daemon: list[str], tmp: Path) -> None:
    """QUERY_CAPABILITY of the input queue on the null backend; then exit 0 on SIGTERM."""
    socket = tmp / "video.sock"
    argv = [*daemon, "--socket-path", str(socket), "--backend", "null"]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[socket]),
        Frontend.connect(socket) as frontend,
    ):
        cmdq, _eventq = frontend.start_device(2, 64)
        assert frontend.ram is not None
        src, dst = frontend.ram.alloc(16), frontend.ram.alloc(4096)
        frontend.ram.memory.write(src, struct.pack("<IIII", QUERY_CAPABILITY, 0, INPUT, 0))
        head = cmdq.driver.add([(src, 16, False), (dst, 4096, True)])
        cmdq.publish()
        ((used, length),) = cmdq.wait_used(1)
        assert used == head and length > 16
        kind, _, num_descs = struct.unpack_from("<III", frontend.ram.memory.read(dst, 12))
        assert (kind, num_descs > 0) == (OK_QUERY_CAPABILITY, True)


def test_video_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_video.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
