"""virtio-snd wire format (VIRTIO 1.3 §5.14): codes, constants and message codecs.

Pure encode/decode over bytes, no I/O. Decoders raise MalformedMessage (a ProtocolError)
on a short or malformed message; the device answers those with VIRTIO_SND_S_BAD_MSG.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from .errors import MalformedMessage

DEVICE_ID = 25
QUEUE_SIZE = 64  # like upstream: the Linux driver drops elements on a full queue


class Queue(enum.IntEnum):
    CONTROL = 0
    EVENT = 1
    TX = 2
    RX = 3


#: Device feature bit: control elements (VIRTIO 1.3), config gains `controls`.
VIRTIO_SND_F_CTLS = 1 << 0


class Direction(enum.IntEnum):
    OUTPUT = 0
    INPUT = 1

    @property
    def label(self) -> str:
        """The name users see (control socket, flags): output or input."""
        return self.name.lower()


class Code(enum.IntEnum):
    JACK_INFO = 1
    JACK_REMAP = 2
    PCM_INFO = 0x0100
    PCM_SET_PARAMS = 0x0101
    PCM_PREPARE = 0x0102
    PCM_RELEASE = 0x0103
    PCM_START = 0x0104
    PCM_STOP = 0x0105
    CHMAP_INFO = 0x0200
    CTL_INFO = 0x0300
    CTL_ENUM_ITEMS = 0x0301
    CTL_READ = 0x0302
    CTL_WRITE = 0x0303
    CTL_TLV_READ = 0x0304
    CTL_TLV_WRITE = 0x0305
    CTL_TLV_COMMAND = 0x0306
    EVT_JACK_CONNECTED = 0x1000
    EVT_JACK_DISCONNECTED = 0x1001
    EVT_PCM_PERIOD_ELAPSED = 0x1100
    EVT_PCM_XRUN = 0x1101
    EVT_CTL_NOTIFY = 0x1200


class Status(enum.IntEnum):
    OK = 0x8000
    BAD_MSG = 0x8001
    NOT_SUPP = 0x8002
    IO_ERR = 0x8003


class Format(enum.IntEnum):
    """VIRTIO_SND_PCM_FMT_*; the comment is (significant bits, bytes per sample)."""

    IMA_ADPCM = 0
    MU_LAW = 1
    A_LAW = 2
    S8 = 3
    U8 = 4
    S16 = 5
    U16 = 6
    S18_3 = 7
    U18_3 = 8
    S20_3 = 9
    U20_3 = 10
    S24_3 = 11
    U24_3 = 12
    S20 = 13
    U20 = 14
    S24 = 15
    U24 = 16
    S32 = 17
    U32 = 18
    FLOAT = 19
    FLOAT64 = 20
    DSD_U8 = 21
    DSD_U16 = 22
    DSD_U32 = 23
    IEC958_SUBFRAME = 24


#: Bytes per sample of the linear formats a backend can be asked to play.
SAMPLE_BYTES: dict[Format, int] = {
    Format.S8: 1,
    Format.U8: 1,
    Format.S16: 2,
    Format.U16: 2,
    Format.S24_3: 3,
    Format.U24_3: 3,
    Format.S20: 4,
    Format.U20: 4,
    Format.S24: 4,
    Format.U24: 4,
    Format.S32: 4,
    Format.U32: 4,
    Format.FLOAT: 4,
    Format.FLOAT64: 8,
}


class Rate(enum.IntEnum):
    """VIRTIO_SND_PCM_RATE_*: index of a frame rate."""

    R5512 = 0
    R8000 = 1
    R11025 = 2
    R16000 = 3
    R22050 = 4
    R32000 = 5
    R44100 = 6
    R48000 = 7
    R64000 = 8
    R88200 = 9
    R96000 = 10
    R176400 = 11
    R192000 = 12
    R384000 = 13

    @property
    def hz(self) -> int:
        return _RATE_HZ[self]


_RATE_HZ = {rate: int(rate.name[1:]) for rate in Rate}


class Chmap(enum.IntEnum):
    """VIRTIO_SND_CHMAP_*: channel positions (the first twelve of the spec's list)."""

    NONE = 0
    NA = 1
    MONO = 2
    FL = 3
    FR = 4
    RL = 5
    RR = 6
    FC = 7
    LFE = 8
    SL = 9
    SR = 10
    RC = 11


CHMAP_MAX_SIZE = 18


def bitmap(items: object) -> int:
    """1 << item for each item: the format and rate masks of PCM_INFO."""
    mask = 0
    for item in items:  # type: ignore[attr-defined]
        mask |= 1 << int(item)
    return mask


# -- config space ------------------------------------------------------------------------

_CONFIG = struct.Struct("<IIII")


@dataclass(frozen=True, slots=True)
class Config:
    jacks: int
    streams: int
    chmaps: int
    controls: int

    def encode(self) -> bytes:
        return _CONFIG.pack(self.jacks, self.streams, self.chmaps, self.controls)


# -- fixed-layout codecs ------------------------------------------------------------------


class Message:
    """Base of fixed-layout little-endian messages; subclasses set FORMAT."""

    FORMAT: ClassVar[struct.Struct]

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode the message's prefix of `data`; shorter data is a BAD_MSG."""
        if len(data) < cls.FORMAT.size:
            raise MalformedMessage(f"{cls.__name__} needs {cls.FORMAT.size} bytes, got {len(data)}")
        return cls(*cls.FORMAT.unpack_from(data))

    def encode(self) -> bytes:
        return self.FORMAT.pack(*(getattr(self, f) for f in self.__slots__))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Header(Message):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I")
    code: int


@dataclass(frozen=True, slots=True)
class QueryInfo(Message):
    """JACK_INFO / PCM_INFO / CHMAP_INFO / CTL_INFO request."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIII")
    code: int
    start_id: int
    count: int
    size: int


@dataclass(frozen=True, slots=True)
class ItemHeader(Message):
    """A request naming one item: PCM_* (stream_id), JACK_REMAP, CTL_* (control_id)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    code: int
    item_id: int


@dataclass(frozen=True, slots=True)
class SetParams(Message):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIIIIBBBx")
    code: int
    stream_id: int
    buffer_bytes: int
    period_bytes: int
    features: int
    channels: int
    format: int
    rate: int


@dataclass(frozen=True, slots=True)
class PcmInfo(Message):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIQQBBB5x")
    hda_fn_nid: int
    features: int
    formats: int
    rates: int
    direction: int
    channels_min: int
    channels_max: int


@dataclass(frozen=True, slots=True)
class ChmapInfo(Message):
    FORMAT: ClassVar[struct.Struct] = struct.Struct(f"<IBB{CHMAP_MAX_SIZE}s")
    hda_fn_nid: int
    direction: int
    channels: int
    positions: bytes


@dataclass(frozen=True, slots=True)
class JackInfo(Message):
    FORMAT: ClassVar[struct.Struct] = struct.Struct("<IIIIB7x")
    hda_fn_nid: int
    features: int
    hda_reg_defconf: int
    hda_reg_caps: int
    connected: int


@dataclass(frozen=True, slots=True)
class PcmXfer(Message):
    """The header of every tx/rx buffer."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<I")
    stream_id: int


@dataclass(frozen=True, slots=True)
class PcmStatus(Message):
    """The tail of every tx/rx buffer, written by the device."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    status: int
    latency_bytes: int


@dataclass(frozen=True, slots=True)
class Event(Message):
    """An event queue element; CTL_NOTIFY packs control id and mask into `data`."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<II")
    code: int
    data: int


# -- control elements (VIRTIO 1.3) ---------------------------------------------------------


class CtlRole(enum.IntEnum):
    UNDEFINED = 0
    VOLUME = 1
    MUTE = 2
    GAIN = 3


class CtlType(enum.IntEnum):
    BOOLEAN = 0
    INTEGER = 1
    INTEGER64 = 2
    ENUMERATED = 3
    BYTES = 4
    IEC958 = 5


class CtlAccess(enum.IntFlag):
    READ = 1 << 0
    WRITE = 1 << 1
    VOLATILE = 1 << 2
    INACTIVE = 1 << 3
    TLV_READ = 1 << 4
    TLV_WRITE = 1 << 5
    TLV_COMMAND = 1 << 6


CTL_NAME_SIZE = 44
#: struct virtio_snd_ctl_value: a 512-byte union (128 x le32 for BOOLEAN/INTEGER).
CTL_VALUE_SIZE = 512
CTL_VALUE_INTS = CTL_VALUE_SIZE // 4
CTL_EVT_MASK_VALUE = 1 << 0


@dataclass(frozen=True, slots=True)
class CtlInfo(Message):
    """struct virtio_snd_ctl_info with the INTEGER arm of its value union (96 bytes:
    the union holds le64s, so it starts 8-aligned after four bytes of padding)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct(f"<IIIIII{CTL_NAME_SIZE}s4xIII12x")
    hda_fn_nid: int
    role: int
    type: int
    access: int
    count: int
    index: int
    name: bytes
    minimum: int
    maximum: int
    step: int


def ctl_values(data: bytes) -> tuple[int, ...]:
    """The le32 array of a struct virtio_snd_ctl_value (CTL_WRITE payload)."""
    if len(data) < CTL_VALUE_SIZE:
        raise MalformedMessage(f"control value needs {CTL_VALUE_SIZE} bytes, got {len(data)}")
    return struct.unpack_from(f"<{CTL_VALUE_INTS}i", data)


def encode_ctl_values(values: tuple[int, ...] | list[int]) -> bytes:
    padded = list(values) + [0] * (CTL_VALUE_INTS - len(values))
    return struct.pack(f"<{CTL_VALUE_INTS}i", *padded)


def ctl_notify_event(control_id: int, mask: int) -> Event:
    """VIRTIO_SND_EVT_CTL_NOTIFY: le16 control id and le16 mask after the code."""
    return Event(Code.EVT_CTL_NOTIFY, control_id | mask << 16)
