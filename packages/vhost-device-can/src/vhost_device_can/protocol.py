"""virtio-can's wire format (the virtio-can draft, device ID 36) and the frame rules,
apart from any queue or host so each rule is tested alone."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

TXQ, RXQ, CTRLQ = 0, 1, 2
QUEUE_SIZE = 64

F_CAN_CLASSIC = 1 << 0
F_CAN_FD = 1 << 1
F_RTR_FRAMES = 1 << 2
F_LATE_TX_ACK = 1 << 3  # defined by the draft, not offered: TX is acked when sent

MSG_TX = 0x0001
MSG_RX = 0x0101
SET_CTRL_MODE_START = 0x0201
SET_CTRL_MODE_STOP = 0x0202

FLAG_EXTENDED = 0x8000
FLAG_FD = 0x4000
FLAG_RTR = 0x2000
KNOWN_FLAGS = FLAG_EXTENDED | FLAG_FD | FLAG_RTR

STATUS_BUSOFF = 1 << 0
CONFIG_SIZE = 16  # the 2-byte status, padded to what QEMU's generic device line asks

SFF_MASK = 0x7FF
EFF_MASK = 0x1FFFFFFF
CLASSIC_MAX_LEN = 8
FD_LENGTHS = frozenset([*range(9), 12, 16, 20, 24, 32, 48, 64])

# msg_type, length, reserved_classic_dlc, padding, reserved_xl_priority, flags, can_id
HEADER = struct.Struct("<HHBBHII")
HEADER_SIZE = HEADER.size  # 16


class Result(IntEnum):
    OK = 0
    NOT_OK = 1


@dataclass(frozen=True)
class Frame:
    """One CAN frame, as the bus and the guest both see it."""

    can_id: int
    data: bytes = b""
    extended: bool = False
    fd: bool = False
    rtr: bool = False
    rtr_length: int = 0  # the DLC a remote frame asks for (it carries no data)

    @property
    def length(self) -> int:
        return self.rtr_length if self.rtr else len(self.data)


class FrameError(ValueError):
    """A frame the negotiated features do not allow; the text says which rule."""


def check_frame(frame: Frame, features: int) -> None:
    """Raise FrameError unless `frame` fits the negotiated `features` (either way)."""
    if frame.can_id > (EFF_MASK if frame.extended else SFF_MASK):
        kind = "extended" if frame.extended else "standard"
        raise FrameError(f"CAN id {frame.can_id:#x} too large for a {kind} id")
    if frame.fd:
        if not features & F_CAN_FD:
            raise FrameError("CAN-FD frame without CAN_FD negotiated")
        if frame.rtr:
            raise FrameError("CAN-FD has no remote frames")
        if frame.length not in FD_LENGTHS:
            raise FrameError(f"CAN-FD length {frame.length} is not a DLC length")
        return
    if not features & F_CAN_CLASSIC:
        raise FrameError("classic frame without CAN_CLASSIC negotiated")
    if frame.rtr and not features & F_RTR_FRAMES:
        raise FrameError("remote frame without RTR_FRAMES negotiated")
    if frame.length > CLASSIC_MAX_LEN:
        raise FrameError(f"classic length {frame.length} over {CLASSIC_MAX_LEN}")


def decode_tx(request: bytes, features: int) -> Frame:
    """A txq request (header and sdu, nothing more) as a frame, or FrameError."""
    if len(request) < HEADER_SIZE:
        raise FrameError(f"TX request of {len(request)} bytes, under the {HEADER_SIZE}-byte header")
    msg_type, length, classic_dlc, padding, xl_priority, flags, can_id = HEADER.unpack_from(request)
    if msg_type != MSG_TX:
        raise FrameError(f"TX message type {msg_type:#06x}")
    if classic_dlc or padding or xl_priority:
        raise FrameError("reserved header fields not zero")
    if flags & ~KNOWN_FLAGS:
        raise FrameError(f"unknown flags {flags & ~KNOWN_FLAGS:#x}")
    rtr = bool(flags & FLAG_RTR)
    # A remote frame's length is the DLC it asks for; it carries no data (Linux sends none).
    sdu = len(request) - HEADER_SIZE
    if sdu != (0 if rtr else length) and not (rtr and sdu == length):
        raise FrameError(f"TX length {length} but {sdu} data bytes")
    frame = Frame(
        can_id=can_id,
        data=b"" if rtr else bytes(request[HEADER_SIZE:]),
        extended=bool(flags & FLAG_EXTENDED),
        fd=bool(flags & FLAG_FD),
        rtr=rtr,
        rtr_length=length if rtr else 0,
    )
    check_frame(frame, features)
    return frame


def encode_rx(frame: Frame) -> bytes:
    """An rxq message for `frame` (checked already)."""
    flags = (
        (FLAG_EXTENDED if frame.extended else 0)
        | (FLAG_FD if frame.fd else 0)
        | (FLAG_RTR if frame.rtr else 0)
    )
    header = HEADER.pack(MSG_RX, frame.length, 0, 0, 0, flags, frame.can_id)
    return header + (b"" if frame.rtr else frame.data)


def encode_tx(frame: Frame) -> bytes:
    """A txq request for `frame`: what a driver sends (tests and bench play the driver)."""
    return struct.pack("<H", MSG_TX) + encode_rx(frame)[2:]


def config_space(status: int) -> bytes:
    return struct.pack("<H", status).ljust(CONFIG_SIZE, b"\0")
