"""SCMI over virtio as bytes: the message header, status codes, the two protocols'
message ids and the encoders of their replies. Pure: no transport, no sensors, so
tests and the dispatcher share one definition of every layout (all little-endian)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

VIRTIO_ID_SCMI = 32
CMDQ, EVENTQ = 0, 1
QUEUE_SIZE = 1024
F_P2A_CHANNELS = 1 << 0  # VIRTIO_SCMI_F_P2A_CHANNELS: the eventq exists
F_SHARED_MEMORY = 1 << 1  # not offered (upstream neither)

NAME_SIZE = 16  # char[16], NUL-terminated: 15 characters at most
BASE_VERSION = 0x20000
SENSOR_VERSION = 0x30000
VENDOR = b"Python"
SUB_VENDOR = b"vhost-device"
IMPLEMENTATION_VERSION = 0


class MessageType(IntEnum):
    COMMAND = 0
    DELAYED_RESPONSE = 2
    NOTIFICATION = 3


class Protocol(IntEnum):
    BASE = 0x10
    SENSOR = 0x15


class Status(IntEnum):
    SUCCESS = 0
    NOT_SUPPORTED = -1
    INVALID_PARAMETERS = -2
    DENIED = -3
    NOT_FOUND = -4
    OUT_OF_RANGE = -5
    BUSY = -6
    COMMS_ERROR = -7
    GENERIC_ERROR = -8
    HARDWARE_ERROR = -9
    PROTOCOL_ERROR = -10


# Messages every protocol has.
PROTOCOL_VERSION = 0x0
PROTOCOL_ATTRIBUTES = 0x1
PROTOCOL_MESSAGE_ATTRIBUTES = 0x2


class BaseMessage(IntEnum):
    VERSION = PROTOCOL_VERSION
    ATTRIBUTES = PROTOCOL_ATTRIBUTES
    MESSAGE_ATTRIBUTES = PROTOCOL_MESSAGE_ATTRIBUTES
    DISCOVER_VENDOR = 0x3
    DISCOVER_SUB_VENDOR = 0x4
    DISCOVER_IMPLEMENTATION_VERSION = 0x5
    DISCOVER_LIST_PROTOCOLS = 0x6


class SensorMessage(IntEnum):
    VERSION = PROTOCOL_VERSION
    ATTRIBUTES = PROTOCOL_ATTRIBUTES
    MESSAGE_ATTRIBUTES = PROTOCOL_MESSAGE_ATTRIBUTES
    DESCRIPTION_GET = 0x3
    READING_GET = 0x6
    AXIS_DESCRIPTION_GET = 0x7
    CONFIG_GET = 0x9
    CONFIG_SET = 0xA
    CONTINUOUS_UPDATE_NOTIFY = 0xB


SENSOR_UPDATE = 0x1  # the sensor protocol's notification id

# sensor_config bits: bit 0 enables the sensor, bit 1 its timestamps.
CONFIG_ENABLED = 1 << 0
CONFIG_TIMESTAMP = 1 << 1
READ_ASYNC = 1 << 0

# Descriptor attribute bits (SCMI v3.x, the layout Linux's sensors.c reads).
ATTR_LOW_UPDATE_NOTIFY = 1 << 30
ATTR_LOW_TIMESTAMP = 1 << 9
ATTR_LOW_EXTENDED = 1 << 8
ATTR_HIGH_AXES = 1 << 8

HEADER = struct.Struct("<I")
DESCRIPTOR_SIZE = 52  # 28 base + power, resolution, min and max range
AXIS_DESCRIPTOR_SIZE = 48  # 28 base + resolution, min and max range
READING_SIZE = 16  # value (s64) and timestamp (u64)


@dataclass(frozen=True)
class Header:
    """The 32-bit SCMI message header."""

    message_id: int
    protocol_id: int
    token: int = 0
    type: int = MessageType.COMMAND

    def pack(self) -> bytes:
        return HEADER.pack(
            (self.message_id & 0xFF)
            | (self.type & 0x3) << 8
            | (self.protocol_id & 0xFF) << 10
            | (self.token & 0x3FF) << 18
        )

    @classmethod
    def unpack(cls, data: bytes) -> Header:
        (word,) = HEADER.unpack_from(data)
        return cls(word & 0xFF, (word >> 10) & 0xFF, (word >> 18) & 0x3FF, (word >> 8) & 0x3)


def u32s(data: bytes, count: int) -> tuple[int, ...] | None:
    """`count` little-endian u32 parameters, or None when the payload's length is not
    exactly that (the spec's PROTOCOL_ERROR case for a malformed message)."""
    if len(data) != 4 * count:
        return None
    return struct.unpack(f"<{count}I", data)


def response(header: Header, status: Status, payload: bytes = b"") -> bytes:
    """A reply: the command's header echoed, the status (s32), the return values."""
    return header.pack() + struct.pack("<i", status) + payload


def notification(message_id: int, protocol_id: int, payload: bytes) -> bytes:
    return Header(message_id, protocol_id, 0, MessageType.NOTIFICATION).pack() + payload


def name16(name: str) -> bytes:
    """A char[16] with its NUL: longer names are refused at configuration time."""
    raw = name.encode()
    if len(raw) >= NAME_SIZE:
        raise ValueError(f"name {name!r} is longer than {NAME_SIZE - 1} bytes")
    return raw.ljust(NAME_SIZE, b"\0")


def s64_words(value: int) -> bytes:
    return struct.pack("<q", value)


def field5(value: int) -> int:
    """A signed 5-bit field (scale, exponents) as its two's-complement bits."""
    if not -16 <= value <= 15:
        raise ValueError(f"{value} does not fit a signed 5-bit field")
    return value & 0x1F


def protocol_list(protocols: Sequence[int]) -> bytes:
    """DISCOVER_LIST_PROTOCOLS's array: one byte each, padded to whole u32 words."""
    raw = bytes(protocols)
    return raw + bytes(-len(raw) % 4)


def readings(values: list[int], timestamp: int) -> bytes:
    return b"".join(struct.pack("<qQ", value, timestamp) for value in values)
