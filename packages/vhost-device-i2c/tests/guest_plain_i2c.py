"""Run inside the i2c guest: the smbus2 adapter's plain-I2C path (`i2c_rdwr`) on the
guest's /dev/i2c-N, which is i2c-virtio served by the daemon's sim bus. Prints one
line per check, for test_i2c_guest to compare."""

from __future__ import annotations

import sys

from vhost_device_i2c.errors import TransferError
from vhost_device_i2c.host import Message, SmbusAdapter


def main(bus: int) -> None:
    adapter = SmbusAdapter(bus)
    print(f"plain-funcs: {adapter.plain}")
    adapter.transfer([Message(0x50, False, bytes([0x60, 9, 8, 7, 6, 5]))])
    got = adapter.transfer([Message(0x50, False, b"\x61"), Message(0x50, True, length=3)])
    print(f"plain-rdwr: {got[1].hex()}")
    try:
        adapter.transfer([Message(0x22, True, length=1)])
        print("plain-unlisted: no error")
    except TransferError as exc:
        print(f"plain-unlisted: {type(exc).__name__} addr={exc.addr:#04x}")
    adapter.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
