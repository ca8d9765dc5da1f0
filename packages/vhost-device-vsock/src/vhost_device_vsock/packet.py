"""The virtio-vsock packet header (virtio 1.3 §5.10.6): constants and codec, no I/O.

Every packet starts with a 44-byte little-endian header; RW packets carry `len` bytes
of payload after it. The header also carries the sender's credit (buf_alloc, fwd_cnt),
so every packet doubles as a credit update.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import NamedTuple

VIRTIO_ID_VSOCK = 19
HEADER = struct.Struct("<QQIIIHHIII")
HEADER_SIZE = HEADER.size  # 44

#: Well-known CIDs: the host is always 2.
VMADDR_CID_HOST = 2

#: Device feature bits.
VIRTIO_VSOCK_F_STREAM = 1 << 0
VIRTIO_VSOCK_F_SEQPACKET = 1 << 1


class Op(IntEnum):
    INVALID = 0
    REQUEST = 1
    RESPONSE = 2
    RST = 3
    SHUTDOWN = 4
    RW = 5
    CREDIT_UPDATE = 6
    CREDIT_REQUEST = 7


class SocketType(IntEnum):
    STREAM = 1
    SEQPACKET = 2


class Shutdown(IntFlag):
    """SHUTDOWN flags: the sender will receive (RCV) / send (SEND) no more."""

    RCV = 1
    SEND = 2
    BOTH = 3


class SeqFlag(IntFlag):
    """RW flags of a SEQPACKET connection: end of message, end of record."""

    EOM = 1
    EOR = 2


class Header(NamedTuple):
    src_cid: int
    dst_cid: int
    src_port: int
    dst_port: int
    len: int
    type: int
    op: int
    flags: int
    buf_alloc: int
    fwd_cnt: int

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """`data` must be at least HEADER_SIZE bytes (the caller checked)."""
        return cls._make(HEADER.unpack_from(data))

    def encode(self) -> bytes:
        return HEADER.pack(*self)

    def describe(self) -> str:
        """One line for logs."""
        try:
            op = Op(self.op).name
        except ValueError:
            op = f"op {self.op}"
        return (
            f"{op} {self.src_cid}:{self.src_port} -> {self.dst_cid}:{self.dst_port} "
            f"len {self.len} type {self.type} flags {self.flags:#x}"
        )


def config_space(guest_cid: int) -> bytes:
    """The device's config space: the guest's CID as a le64."""
    return struct.pack("<Q", guest_cid)
