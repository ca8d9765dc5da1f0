"""One transfer through the core's frontend to the vhost-device-i2c command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_i2c_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

FAIL_NEXT, M_RD = 1, 2
EEPROM = 0x50


def smoke(daemon: list[str], tmp: Path) -> None:
    """Store a byte in the sim bus's EEPROM, read it back with a repeated start; the
    daemon then exits 0 on SIGTERM."""
    base = tmp / "i2c.sock"
    argv = [*daemon, "--socket-path", str(base), "--device-list", f"sim:{EEPROM}"]
    with (
        daemon_process(argv, log=tmp / "i2c.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        (queue,) = frontend.start_device(1, 16)
        ram = frontend.ram
        assert ram is not None

        def request(flags: int, data: bytes = b"", read: int = 0) -> tuple[int, int, int]:
            header = ram.alloc(8)
            ram.memory.write(header, struct.pack("<HHI", EEPROM << 1, 0, flags))
            buffer = ram.alloc(max(len(data), read))
            ram.memory.write(buffer, data)
            status = ram.alloc(1)
            chain = [(header, 8, False), (buffer, len(data) or read, bool(read)), (status, 1, True)]
            return queue.driver.add(chain), status, buffer

        stored = request(0, b"\x07\xab")  # offset 7 := 0xab
        offset = request(FAIL_NEXT, b"\x07")  # then, in one transfer: offset 7, read 1
        read = request(M_RD, read=1)
        queue.publish()
        assert len(queue.wait_used(3)) == 3
        assert [ram.memory.read(r[1], 1) for r in (stored, offset, read)] == [b"\x00"] * 3
        assert ram.memory.read(read[2], 1) == b"\xab"


def test_i2c_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_i2c.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
