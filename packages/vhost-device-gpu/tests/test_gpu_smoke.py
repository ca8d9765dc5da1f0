"""One command through the core's frontend to the vhost-device-gpu command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_gpu_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """GET_DISPLAY_INFO of a headless daemon: one 1280x800 scanout; then SIGTERM, 0."""
    path = tmp / "gpu.sock"
    argv = [*daemon, "--socket-path", str(path), "--gpu-mode", "2d", "--headless"]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[path]),
        Frontend.connect(path) as frontend,
    ):
        control, _cursor = frontend.start_device(2, 64)
        assert frontend.ram is not None
        src, dst = frontend.ram.alloc(24), frontend.ram.alloc(408)
        frontend.ram.memory.write(src, struct.pack("<IIQIB3x", 0x100, 0, 0, 0, 0))
        head = control.driver.add([(src, 24, False), (dst, 408, True)])
        control.publish()
        assert control.wait_used(1) == [(head, 408)]
        answer = frontend.ram.memory.read(dst, 408)
        assert struct.unpack_from("<I", answer)[0] == 0x1101
        assert struct.unpack_from("<IIIIII", answer, 24) == (0, 0, 1280, 800, 1, 0)


def test_gpu_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_gpu.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
