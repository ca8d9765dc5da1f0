"""The virtio-gpio wire format (virtio spec, "GPIO Device"): message types, status codes,
directions, IRQ types, the config space and the names blob. Pure: bytes in, bytes out."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

DEVICE_ID = 41
REQUESTQ, EVENTQ = 0, 1
QUEUE_SIZE = 256
F_IRQ = 1 << 0  # VIRTIO_GPIO_F_IRQ: the eventq exists

REQUEST = struct.Struct("<HHI")  # type, gpio, value
IRQ_REQUEST = struct.Struct("<H")  # gpio
RESPONSE_SIZE = 2  # status, value
IRQ_RESPONSE_SIZE = 1  # status


class Msg(enum.IntEnum):
    GET_NAMES = 1
    GET_DIRECTION = 2
    SET_DIRECTION = 3
    GET_VALUE = 4
    SET_VALUE = 5
    IRQ_TYPE = 6


class Status(enum.IntEnum):
    OK = 0
    ERR = 1


class IrqStatus(enum.IntEnum):
    INVALID = 0
    VALID = 1


class Direction(enum.IntEnum):
    NONE = 0
    OUT = 1
    IN = 2


class IrqType(enum.IntEnum):
    NONE = 0
    EDGE_RISING = 1
    EDGE_FALLING = 2
    EDGE_BOTH = 3
    LEVEL_HIGH = 4
    LEVEL_LOW = 8

    @property
    def is_level(self) -> bool:
        return self in (IrqType.LEVEL_HIGH, IrqType.LEVEL_LOW)

    def fires_on(self, rising: bool) -> bool:
        """Whether an edge in that direction is an interrupt for an edge type."""
        return bool(self & (IrqType.EDGE_RISING if rising else IrqType.EDGE_FALLING))


@dataclass(frozen=True)
class Request:
    type: int
    gpio: int
    value: int

    @classmethod
    def decode(cls, data: bytes) -> Request | None:
        """None unless `data` is exactly one request: the spec fixes its size."""
        if len(data) != REQUEST.size:
            return None
        return cls(*REQUEST.unpack(data))


def decode_irq_request(data: bytes) -> int | None:
    """The line an eventq buffer waits on, or None for a malformed request."""
    if len(data) != IRQ_REQUEST.size:
        return None
    return int(IRQ_REQUEST.unpack(data)[0])


def response(status: Status, value: int = 0) -> bytes:
    return bytes((status, value))


def names_blob(names: list[str]) -> bytes:
    """Each name NUL-terminated, in line order (what GET_LINE_NAMES returns)."""
    return b"".join(name.encode() + b"\0" for name in names)


def config_space(ngpio: int, names_size: int) -> bytes:
    """struct virtio_gpio_config: le16 ngpio, 2 bytes padding, le32 gpio_names_size."""
    return struct.pack("<HxxI", ngpio, names_size)
