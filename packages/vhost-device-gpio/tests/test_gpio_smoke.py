"""One request through the core's frontend to the vhost-device-gpio command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_gpio_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

SET_VALUE, GET_VALUE, SET_DIRECTION, OUT = 0x0005, 0x0004, 0x0003, 0x01


def smoke(daemon: list[str], tmp: Path) -> None:
    """Line 3 of a mock chip made an output, set high and read back; the daemon then
    exits 0 on SIGTERM."""
    base = tmp / "gpio.sock"
    argv = [*daemon, "--socket-path", str(base), "--device-list", "s8"]
    with (
        daemon_process(argv, log=tmp / "gpio.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        request_q, _events = frontend.start_device(2, 16)
        ram = frontend.ram
        assert ram is not None
        assert frontend.get_config(0, 2) == b"\x08\x00"  # ngpio

        def request(kind: int, value: int = 0) -> bytes:
            out, answer = ram.alloc(8), ram.alloc(2)
            ram.memory.write(out, struct.pack("<HHI", kind, 3, value))
            ram.memory.write(answer, b"\xee\xee")
            request_q.driver.add([(out, 8, False), (answer, 2, True)])
            request_q.publish()
            assert len(request_q.wait_used(1)) == 1
            return ram.memory.read(answer, 2)

        assert request(SET_DIRECTION, OUT)[:1] == b"\x00"
        assert request(SET_VALUE, 1)[:1] == b"\x00"
        assert request(GET_VALUE) == b"\x00\x01"


def test_gpio_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_gpio.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
