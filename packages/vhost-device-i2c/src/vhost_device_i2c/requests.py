"""virtio-i2c requests (virtio 1.2 §5.19) out of descriptor chains: pure checks, no I/O.

Framing follows the spec, not one driver's descriptors: the device-readable bytes are
the 8-byte out header then, for a write, the data; the device-writable bytes are, for
a read, the data then the 1-byte status, else just the status.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vhost_user_core import DescriptorChain

from .host import Message

VIRTIO_ID_I2C_ADAPTER = 34
VIRTIO_I2C_F_ZERO_LENGTH_REQUEST = 1 << 0
VIRTIO_I2C_FLAGS_FAIL_NEXT = 1 << 0
VIRTIO_I2C_FLAGS_M_RD = 1 << 1
VIRTIO_I2C_MSG_OK, VIRTIO_I2C_MSG_ERR = 0, 1
OUT_HDR = struct.Struct("<HHI")  # addr (7-bit << 1), padding, flags
MAX_MSG_LEN = 0xFFFF  # struct i2c_msg's u16 len


@dataclass(frozen=True)
class Request:
    """A well-formed request: its chain's head, the message and FAIL_NEXT."""

    head: int
    message: Message
    fail_next: bool


@dataclass(frozen=True)
class Malformed:
    """A request that cannot be served: why, and whether it has a status byte to fail."""

    head: int
    why: str
    status_room: bool


def parse(chain: DescriptorChain) -> Request | Malformed:
    head, writable = chain.head, chain.writable_len
    if chain.error is not None:
        return Malformed(head, chain.error, False)
    if writable < 1:
        return Malformed(head, "no device-writable status byte", False)
    readable = chain.read(MAX_MSG_LEN + OUT_HDR.size + 1)
    if len(readable) < OUT_HDR.size:
        return Malformed(head, f"a {len(readable)}-byte out header", True)
    addr, _padding, flags = OUT_HDR.unpack_from(readable)
    fail_next = bool(flags & VIRTIO_I2C_FLAGS_FAIL_NEXT)
    if flags & VIRTIO_I2C_FLAGS_M_RD:
        if len(readable) != OUT_HDR.size:
            return Malformed(head, "a read request with device-readable data", True)
        length = writable - 1
        if length > MAX_MSG_LEN:
            return Malformed(head, f"a {length}-byte read", True)
        return Request(head, Message(addr >> 1, True, length=length), fail_next)
    if writable != 1:
        return Malformed(head, "a write request with device-writable data", True)
    data = readable[OUT_HDR.size :]
    if len(data) > MAX_MSG_LEN:
        return Malformed(head, f"a {len(data)}-byte write", True)
    return Request(head, Message(addr >> 1, False, data=data), fail_next)
