"""One frame through the core's frontend to the vhost-device-can command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_can_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """START on the control queue, then one classic frame on the virtual bus: OK both."""
    base = tmp / "device.sock"
    argv = [*daemon, "--socket-path", str(base), "--can-devices", "virtual:smoke"]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        queues = frontend.start_device(3, 64)
        assert frontend.ram is not None
        ram = frontend.ram
        for queue, request in [
            (queues[2], struct.pack("<H", 0x0201)),  # SET_CTRL_MODE_START
            (queues[0], struct.pack("<HHBBHII", 0x0001, 2, 0, 0, 0, 0, 0x123) + b"hi"),
        ]:
            src, result = ram.alloc(len(request)), ram.alloc(1)
            ram.memory.write(src, request)
            ram.memory.write(result, b"\xee")
            head = queue.driver.add([(src, len(request), False), (result, 1, True)])
            queue.publish()
            assert queue.wait_used(1) == [(head, 1)]
            assert ram.memory.read(result, 1) == b"\x00"  # VIRTIO_CAN_RESULT_OK


def test_can_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_can.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
