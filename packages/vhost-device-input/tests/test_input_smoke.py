"""One event through the core's frontend from the vhost-device-input command's sim
keyboard.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_input_smoke.py
DAEMON TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """KEY_A pressed through the events socket reaches the eventq; exit 0 on SIGTERM."""
    base = tmp / "device.sock"
    argv = [*daemon, "--socket-path", str(base), "--event-list", "sim:keyboard"]
    with (
        daemon_process(argv, log=tmp / "device.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        eventq, _ = frontend.start_device(2, 64)
        assert frontend.ram is not None
        addrs = [frontend.ram.alloc(8) for _ in range(2)]
        heads = [eventq.driver.add([(addr, 8, True)]) for addr in addrs]
        eventq.publish()
        with socket.socket(socket.AF_UNIX) as events:
            events.connect(f"{base}0.events")
            events.sendall(b"EV_KEY KEY_A 1\nEV_SYN SYN_REPORT 0\n")
            assert eventq.wait_used(2) == [(heads[0], 8), (heads[1], 8)]
        got = [struct.unpack("<HHi", frontend.ram.memory.read(a, 8)) for a in addrs]
        assert got == [(1, 30, 1), (0, 0, 0)]


def test_input_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_input.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
