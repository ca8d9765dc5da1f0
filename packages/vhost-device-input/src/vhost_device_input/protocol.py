"""virtio-input's wire formats (virtio spec 5.8): the 8-byte event and the config
space the driver reads through select/subsel."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

DEVICE_ID = 18
EVENTQ, STATUSQ = 0, 1
QUEUE_SIZE = 1024

EVENT = struct.Struct("<HHi")  # le16 type, le16 code, le32 value
EVENT_SIZE = EVENT.size
CONFIG_SIZE = 136  # select, subsel, size, reserved[5], union u[128]
PAYLOAD_SIZE = 128

EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC, EV_SW = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
EV_LED, EV_SND, EV_REP = 0x11, 0x12, 0x14
SYN_REPORT, SYN_DROPPED = 0, 3
#: The event types the guest may send back on the status queue (to the host device).
STATUS_TYPES = frozenset({EV_LED, EV_SND})

Event = tuple[int, int, int]  # (type, code, value)
SYN_DROPPED_EVENT: Event = (EV_SYN, SYN_DROPPED, 0)


class Select(IntEnum):
    UNSET = 0x00
    ID_NAME = 0x01
    ID_SERIAL = 0x02
    ID_DEVIDS = 0x03
    PROP_BITS = 0x10
    EV_BITS = 0x11
    ABS_INFO = 0x12


@dataclass(frozen=True)
class AbsInfo:
    min: int
    max: int
    fuzz: int = 0
    flat: int = 0
    res: int = 0


@dataclass(frozen=True)
class DevIds:
    bustype: int
    vendor: int
    product: int
    version: int


@dataclass(frozen=True)
class Description:
    """What a device is, as the guest's driver learns it from the config space."""

    name: str
    serial: str
    ids: DevIds
    props: frozenset[int] = frozenset()
    #: event type → the codes it has (EV_SYN is implied and never listed)
    codes: dict[int, frozenset[int]] = field(default_factory=dict)
    absinfo: dict[int, AbsInfo] = field(default_factory=dict)


def bitmap(bits: Iterable[int]) -> bytes:
    """Bit n at byte n // 8, bit n % 8 (evdev's order), trailing zero bytes dropped;
    bits beyond the 1024 the config space holds are left out."""
    out = bytearray(PAYLOAD_SIZE)
    for bit in bits:
        if 0 <= bit < PAYLOAD_SIZE * 8:
            out[bit // 8] |= 1 << (bit % 8)
    return bytes(out).rstrip(b"\0")


def payload(desc: Description, select: int, subsel: int) -> bytes:
    """The union's bytes for (select, subsel); empty (size 0) when there is nothing."""
    if select == Select.ID_NAME and subsel == 0:
        return desc.name.encode()[:PAYLOAD_SIZE]
    if select == Select.ID_SERIAL and subsel == 0:
        return desc.serial.encode()[:PAYLOAD_SIZE]
    if select == Select.ID_DEVIDS and subsel == 0:
        ids = desc.ids
        return struct.pack("<HHHH", ids.bustype, ids.vendor, ids.product, ids.version)
    if select == Select.PROP_BITS and subsel == 0:
        return bitmap(desc.props)
    if select == Select.EV_BITS and subsel != EV_SYN:
        return bitmap(desc.codes.get(subsel, ()))
    if select == Select.ABS_INFO and subsel in desc.absinfo:
        a = desc.absinfo[subsel]
        return struct.pack("<iiiii", a.min, a.max, a.fuzz, a.flat, a.res)
    return b""


def config_space(desc: Description, select: int, subsel: int) -> bytes:
    data = payload(desc, select, subsel)
    head = bytes([select, subsel, len(data)]) + bytes(5)
    return head + data.ljust(PAYLOAD_SIZE, b"\0")
