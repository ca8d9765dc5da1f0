"""The virtio-video v3 draft's wire format as bytes: ids, structs, requests and responses.

Pure: no I/O, no state. `decode_command` turns a command's readable bytes into one of
the request dataclasses or raises `CommandError` with the draft's error code; the
`encode_*` functions build what goes into the device-writable buffers. Every struct
is little-endian with the draft's explicit padding, so each is one `struct.Struct`.

Additions to the draft, as upstream's crate and the out-of-tree driver it tests with
define them: VIRTIO_VIDEO_FORMAT_FWHT (0x1006), the coded format of the kernel's
vicodec, and GET/SET_PARAMS_EXT (0x010D/0x010E), the params followed by a le32
resource_type (and padding), which that driver sends instead of GET/SET_PARAMS.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import TypeVar

DEVICE_ID_ENCODER = 30
DEVICE_ID_DECODER = 31

COMMANDQ, EVENTQ = 0, 1
QUEUE_SIZE = 1024

#: Feature bits (device-specific, so bit numbers below 24).
F_RESOURCE_GUEST_PAGES = 1 << 0
F_RESOURCE_NON_CONTIG = 1 << 1
F_RESOURCE_VIRTIO_OBJECT = 1 << 2

MAX_PLANES = 8
#: The largest frame width or height SET_PARAMS may ask for (no backend offers more than
#: 4096): within it every plane of a raw frame fits the draft's u32 plane_size, beyond
#: it the next GET_PARAMS could not even describe the frame.
MAX_FRAME_DIMENSION = 16384
MAX_FORMAT_DESCS = 64  # "The value MUST not exceed 64": also the width of `mask`
TAG_SIZE = 64


class Cmd(IntEnum):
    QUERY_CAPABILITY = 0x0100
    STREAM_CREATE = 0x0101
    STREAM_DESTROY = 0x0102
    STREAM_DRAIN = 0x0103
    RESOURCE_CREATE = 0x0104
    RESOURCE_QUEUE = 0x0105
    RESOURCE_DESTROY_ALL = 0x0106
    QUEUE_CLEAR = 0x0107
    GET_PARAMS = 0x0108
    SET_PARAMS = 0x0109
    QUERY_CONTROL = 0x010A
    GET_CONTROL = 0x010B
    SET_CONTROL = 0x010C
    GET_PARAMS_EXT = 0x010D  # upstream's, see the module docstring
    SET_PARAMS_EXT = 0x010E


class Resp(IntEnum):
    OK_NODATA = 0x0200
    OK_QUERY_CAPABILITY = 0x0201
    OK_RESOURCE_QUEUE = 0x0202
    OK_GET_PARAMS = 0x0203
    OK_QUERY_CONTROL = 0x0204
    OK_GET_CONTROL = 0x0205
    ERR_INVALID_OPERATION = 0x0300
    ERR_OUT_OF_MEMORY = 0x0301
    ERR_INVALID_STREAM_ID = 0x0302
    ERR_INVALID_RESOURCE_ID = 0x0303
    ERR_INVALID_PARAMETER = 0x0304
    ERR_UNSUPPORTED_CONTROL = 0x0305


class QueueType(IntEnum):
    INPUT = 0x100
    OUTPUT = 0x101


class MemType(IntEnum):
    GUEST_PAGES = 0
    VIRTIO_OBJECT = 1


class Format(IntEnum):
    ARGB8888 = 1
    BGRA8888 = 2
    NV12 = 3
    YUV420 = 4
    YVU420 = 5
    MPEG2 = 0x1000
    MPEG4 = 0x1001
    H264 = 0x1002
    HEVC = 0x1003
    VP8 = 0x1004
    VP9 = 0x1005
    FWHT = 0x1006  # vicodec's; not in the draft (see the module docstring)

    @property
    def coded(self) -> bool:
        return self >= Format.MPEG2


class PlanesLayout(IntFlag):
    SINGLE_BUFFER = 1 << 0
    PER_PLANE = 1 << 1


class BufferFlag(IntFlag):
    ERR = 0x0001
    EOS = 0x0002
    IFRAME = 0x0004  # encoder only, like the two below
    PFRAME = 0x0008
    BFRAME = 0x0010


class Control(IntEnum):
    BITRATE = 1
    PROFILE = 2
    LEVEL = 3


class EventType(IntEnum):
    ERROR = 0x0100
    DECODER_RESOLUTION_CHANGED = 0x0200


class Profile(IntEnum):
    H264_BASELINE = 0x100
    H264_MAIN = 0x101
    H264_EXTENDED = 0x102
    H264_HIGH = 0x103
    HEVC_MAIN = 0x200
    HEVC_MAIN10 = 0x201
    VP8_PROFILE0 = 0x300
    VP9_PROFILE0 = 0x400


class Level(IntEnum):
    H264_1_0 = 0x100
    H264_2_0 = 0x104
    H264_3_0 = 0x107
    H264_4_0 = 0x10A
    H264_4_1 = 0x10B
    H264_5_1 = 0x10E


E = TypeVar("E", bound=IntEnum)

HDR = struct.Struct("<II")  # type, stream_id
CONFIG = struct.Struct("<III")  # version, max_caps_length, max_resp_length
QUEUE_ARG = struct.Struct("<I4x")  # queue_type (QUERY_CAPABILITY, DESTROY_ALL, CLEAR, GET_PARAMS)
STREAM_CREATE = struct.Struct(f"<III4x{TAG_SIZE}s")
RESOURCE_CREATE = struct.Struct(f"<IIII{MAX_PLANES}I{MAX_PLANES}I")
MEM_ENTRY = struct.Struct("<QI4x")
RESOURCE_QUEUE = struct.Struct(f"<IIQI{MAX_PLANES}I4x")
RESOURCE_QUEUE_RESP = struct.Struct("<QII")  # timestamp, flags, size
PARAMS = struct.Struct(f"<6I4I2I{2 * MAX_PLANES}I")
PARAMS_EXT_TAIL = struct.Struct("<I4x")  # resource_type
CONTROL_ARG = struct.Struct("<I4x")  # control; and each control_val_* / query argument
CAP_RESP = struct.Struct("<I4x")  # num_descs
FORMAT_DESC = struct.Struct("<QIIII")
FORMAT_RANGE = struct.Struct("<III4x")
FORMAT_FRAME_TAIL = struct.Struct("<I4x")  # num_rates, after width and height
QUERY_CONTROL_RESP = struct.Struct("<I4x")  # num, then le32 values
EVENT = struct.Struct("<II")

GET_PARAMS_RESP_SIZE = HDR.size + PARAMS.size


class CommandError(Exception):
    """The request fails with `code`, one of the draft's VIRTIO_VIDEO_RESP_ERR_*."""

    def __init__(self, code: Resp, why: str) -> None:
        super().__init__(why)
        self.code = code


def _invalid(why: str) -> CommandError:
    return CommandError(Resp.ERR_INVALID_PARAMETER, why)


def _enum(kind: type[E], value: int, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise _invalid(f"{what} {value:#x} is not one of the draft's") from None


# -- the structures inside requests and responses --------------------------------------


@dataclass(frozen=True)
class Range:
    min: int
    max: int
    step: int = 0

    @classmethod
    def one(cls, value: int) -> Range:
        return cls(value, value, 0)


@dataclass(frozen=True)
class FormatFrame:
    width: Range
    height: Range
    rates: tuple[Range, ...] = ()


@dataclass(frozen=True)
class FormatDesc:
    format: Format
    mask: int  # bit i: converts to/from the i-th format of the other queue's list
    planes_layout: PlanesLayout = PlanesLayout.SINGLE_BUFFER
    plane_align: int = 0
    frames: tuple[FormatFrame, ...] = ()


@dataclass(frozen=True)
class Crop:
    left: int = 0
    top: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class PlaneFormat:
    plane_size: int
    stride: int


@dataclass(frozen=True)
class Params:
    queue_type: QueueType
    format: Format
    frame_width: int
    frame_height: int
    min_buffers: int
    max_buffers: int
    crop: Crop
    frame_rate: int
    plane_formats: tuple[PlaneFormat, ...]

    def encode(self) -> bytes:
        planes = [0] * (2 * MAX_PLANES)
        for i, plane in enumerate(self.plane_formats):
            planes[2 * i : 2 * i + 2] = [plane.plane_size, plane.stride]
        c = self.crop
        return PARAMS.pack(
            self.queue_type,
            self.format,
            self.frame_width,
            self.frame_height,
            self.min_buffers,
            self.max_buffers,
            c.left,
            c.top,
            c.width,
            c.height,
            self.frame_rate,
            len(self.plane_formats),
            *planes,
        )

    @classmethod
    def decode(cls, data: bytes) -> Params:
        v = PARAMS.unpack(data)
        queue_type = _enum(QueueType, v[0], "queue_type")
        fmt = _enum(Format, v[1], "format")
        if max(v[2], v[3]) > MAX_FRAME_DIMENSION:
            raise _invalid(f"frame {v[2]}x{v[3]} is over {MAX_FRAME_DIMENSION} a side")
        num_planes = v[11]
        if num_planes > MAX_PLANES:
            raise _invalid(f"num_planes {num_planes} is over {MAX_PLANES}")
        planes = tuple(PlaneFormat(v[12 + 2 * i], v[13 + 2 * i]) for i in range(num_planes))
        return cls(queue_type, fmt, v[2], v[3], v[4], v[5], Crop(*v[6:10]), v[10], planes)


@dataclass(frozen=True)
class MemEntry:
    addr: int  # guest-physical
    length: int


# -- requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryCapability:
    queue_type: QueueType


@dataclass(frozen=True)
class StreamCreate:
    stream_id: int
    in_mem_type: MemType
    out_mem_type: MemType
    coded_format: Format
    tag: str


@dataclass(frozen=True)
class StreamDestroy:
    stream_id: int


@dataclass(frozen=True)
class StreamDrain:
    stream_id: int


@dataclass(frozen=True)
class ResourceCreate:
    stream_id: int
    queue_type: QueueType
    resource_id: int
    planes_layout: PlanesLayout
    plane_offsets: tuple[int, ...]
    planes: tuple[tuple[MemEntry, ...], ...]  # each plane's entries (one plane if SINGLE)


@dataclass(frozen=True)
class ResourceQueue:
    stream_id: int
    queue_type: QueueType
    resource_id: int
    timestamp: int
    data_sizes: tuple[int, ...]


@dataclass(frozen=True)
class ResourceDestroyAll:
    stream_id: int
    queue_type: QueueType


@dataclass(frozen=True)
class QueueClear:
    stream_id: int
    queue_type: QueueType


@dataclass(frozen=True)
class GetParams:
    stream_id: int
    queue_type: QueueType
    ext: bool = False  # GET_PARAMS_EXT: answered with resource_type after the params


@dataclass(frozen=True)
class SetParams:
    stream_id: int
    params: Params


@dataclass(frozen=True)
class QueryControl:
    control: Control
    argument: int  # the format (PROFILE; LEVEL as the header lays it out); 0 for BITRATE


@dataclass(frozen=True)
class GetControl:
    stream_id: int
    control: Control


@dataclass(frozen=True)
class SetControl:
    stream_id: int
    control: Control
    value: int


Command = (
    QueryCapability
    | StreamCreate
    | StreamDestroy
    | StreamDrain
    | ResourceCreate
    | ResourceQueue
    | ResourceDestroyAll
    | QueueClear
    | GetParams
    | SetParams
    | QueryControl
    | GetControl
    | SetControl
)

#: Each command's fixed size after the header (RESOURCE_CREATE: before its entries).
BODY_SIZE: dict[Cmd, int] = {
    Cmd.QUERY_CAPABILITY: QUEUE_ARG.size,
    Cmd.STREAM_CREATE: STREAM_CREATE.size,
    Cmd.STREAM_DESTROY: 0,
    Cmd.STREAM_DRAIN: 0,
    Cmd.RESOURCE_CREATE: RESOURCE_CREATE.size,
    Cmd.RESOURCE_QUEUE: RESOURCE_QUEUE.size,
    Cmd.RESOURCE_DESTROY_ALL: QUEUE_ARG.size,
    Cmd.QUEUE_CLEAR: QUEUE_ARG.size,
    Cmd.GET_PARAMS: QUEUE_ARG.size,
    Cmd.SET_PARAMS: PARAMS.size,
    Cmd.QUERY_CONTROL: 2 * CONTROL_ARG.size,
    Cmd.GET_CONTROL: CONTROL_ARG.size,
    Cmd.SET_CONTROL: 2 * CONTROL_ARG.size,
    Cmd.GET_PARAMS_EXT: QUEUE_ARG.size,
    Cmd.SET_PARAMS_EXT: PARAMS.size + PARAMS_EXT_TAIL.size,
}
#: The most mem entries one RESOURCE_CREATE may carry (a chain cannot be longer anyway).
MAX_MEM_ENTRIES = 4096
MAX_COMMAND_SIZE = HDR.size + RESOURCE_CREATE.size + MAX_MEM_ENTRIES * MEM_ENTRY.size


def peek_header(data: bytes) -> tuple[int, int] | None:
    """(type, stream_id) if the request has a whole header."""
    return HDR.unpack_from(data) if len(data) >= HDR.size else None


def decode_command(data: bytes) -> Command:
    """One command from its device-readable bytes; CommandError if it is malformed."""
    header = peek_header(data)
    if header is None:
        raise _invalid(f"request of {len(data)} bytes has no header")
    raw_type, stream_id = header
    try:
        cmd = Cmd(raw_type)
    except ValueError:
        raise CommandError(Resp.ERR_INVALID_OPERATION, f"unknown command {raw_type:#x}") from None
    body = data[HDR.size :]
    if len(body) < BODY_SIZE[cmd]:
        raise _invalid(f"{cmd.name} of {len(data)} bytes is short")
    match cmd:
        case Cmd.QUERY_CAPABILITY:
            return QueryCapability(_queue_arg(body))
        case Cmd.STREAM_CREATE:
            in_mem, out_mem, coded, tag = STREAM_CREATE.unpack_from(body)
            fmt = _enum(Format, coded, "coded_format")
            if not fmt.coded:
                raise _invalid(f"coded_format {fmt.name} is a raw format")
            return StreamCreate(
                stream_id,
                _enum(MemType, in_mem, "in_mem_type"),
                _enum(MemType, out_mem, "out_mem_type"),
                fmt,
                tag.split(b"\0", 1)[0].decode("utf-8", "replace"),
            )
        case Cmd.STREAM_DESTROY:
            return StreamDestroy(stream_id)
        case Cmd.STREAM_DRAIN:
            return StreamDrain(stream_id)
        case Cmd.RESOURCE_CREATE:
            return _resource_create(stream_id, body)
        case Cmd.RESOURCE_QUEUE:
            queue, resource_id, timestamp, num_sizes, *sizes = RESOURCE_QUEUE.unpack_from(body)
            if num_sizes > MAX_PLANES:
                raise _invalid(f"num_data_sizes {num_sizes} is over {MAX_PLANES}")
            qt = _enum(QueueType, queue, "queue_type")
            return ResourceQueue(stream_id, qt, resource_id, timestamp, tuple(sizes[:num_sizes]))
        case Cmd.RESOURCE_DESTROY_ALL:
            return ResourceDestroyAll(stream_id, _queue_arg(body))
        case Cmd.QUEUE_CLEAR:
            return QueueClear(stream_id, _queue_arg(body))
        case Cmd.GET_PARAMS | Cmd.GET_PARAMS_EXT:
            return GetParams(stream_id, _queue_arg(body), cmd == Cmd.GET_PARAMS_EXT)
        case Cmd.SET_PARAMS | Cmd.SET_PARAMS_EXT:
            if cmd == Cmd.SET_PARAMS_EXT:
                (resource_type,) = PARAMS_EXT_TAIL.unpack_from(body, PARAMS.size)
                _enum(MemType, resource_type, "resource_type")
            return SetParams(stream_id, Params.decode(body[: PARAMS.size]))
        case Cmd.QUERY_CONTROL:
            (control,) = CONTROL_ARG.unpack_from(body)
            (argument,) = CONTROL_ARG.unpack_from(body, CONTROL_ARG.size)
            return QueryControl(_control(control), argument)
        case Cmd.GET_CONTROL:
            return GetControl(stream_id, _control(CONTROL_ARG.unpack_from(body)[0]))
        case Cmd.SET_CONTROL:
            (control,) = CONTROL_ARG.unpack_from(body)
            (value,) = CONTROL_ARG.unpack_from(body, CONTROL_ARG.size)
            return SetControl(stream_id, _control(control), value)
    raise AssertionError(cmd)  # pragma: no cover - every Cmd is matched


def _queue_arg(body: bytes) -> QueueType:
    return _enum(QueueType, QUEUE_ARG.unpack_from(body)[0], "queue_type")


def _control(value: int) -> Control:
    try:
        return Control(value)
    except ValueError:
        raise CommandError(Resp.ERR_UNSUPPORTED_CONTROL, f"control {value} is unknown") from None


def _resource_create(stream_id: int, body: bytes) -> ResourceCreate:
    queue, resource_id, layout, num_planes, *rest = RESOURCE_CREATE.unpack_from(body)
    offsets, counts = rest[:MAX_PLANES], rest[MAX_PLANES:]
    qt = _enum(QueueType, queue, "queue_type")
    if layout not in (PlanesLayout.SINGLE_BUFFER, PlanesLayout.PER_PLANE):
        raise _invalid(f"planes_layout {layout:#x} is not exactly one layout bit")
    if not 1 <= num_planes <= MAX_PLANES:
        raise _invalid(f"num_planes {num_planes} is not 1..{MAX_PLANES}")
    used = counts[:1] if layout == PlanesLayout.SINGLE_BUFFER else counts[:num_planes]
    total = sum(used)
    if total == 0 or total > MAX_MEM_ENTRIES:
        raise _invalid(f"{total} memory entries (1..{MAX_MEM_ENTRIES} allowed)")
    entries_at = RESOURCE_CREATE.size
    if len(body) < entries_at + total * MEM_ENTRY.size:
        raise _invalid(f"RESOURCE_CREATE announces {total} entries and carries fewer")
    planes: list[tuple[MemEntry, ...]] = []
    at = entries_at
    for count in used:
        plane = []
        for _ in range(count):
            addr, length = MEM_ENTRY.unpack_from(body, at)
            at += MEM_ENTRY.size
            if length == 0:
                raise _invalid("a memory entry of 0 bytes")
            plane.append(MemEntry(addr, length))
        planes.append(tuple(plane))
    return ResourceCreate(
        stream_id, qt, resource_id, PlanesLayout(layout), tuple(offsets[:num_planes]), tuple(planes)
    )


# -- responses and events ---------------------------------------------------------------


def encode_header(resp: Resp, stream_id: int = 0) -> bytes:
    return HDR.pack(resp, stream_id)


def encode_error(code: Resp, stream_id: int = 0) -> bytes:
    return HDR.pack(code, stream_id)


def encode_capability(descs: list[FormatDesc], stream_id: int = 0) -> bytes:
    out = bytearray(HDR.pack(Resp.OK_QUERY_CAPABILITY, stream_id))
    out += CAP_RESP.pack(len(descs))
    for desc in descs:
        out += FORMAT_DESC.pack(
            desc.mask, desc.format, desc.planes_layout, desc.plane_align, len(desc.frames)
        )
        for frame in desc.frames:
            for r in (frame.width, frame.height):
                out += FORMAT_RANGE.pack(r.min, r.max, r.step)
            out += FORMAT_FRAME_TAIL.pack(len(frame.rates))
            for r in frame.rates:
                out += FORMAT_RANGE.pack(r.min, r.max, r.step)
    return bytes(out)


def encode_resource_queue(stream_id: int, timestamp: int, flags: int, size: int = 0) -> bytes:
    return HDR.pack(Resp.OK_RESOURCE_QUEUE, stream_id) + RESOURCE_QUEUE_RESP.pack(
        timestamp & (1 << 64) - 1, flags, size
    )


def encode_params(stream_id: int, params: Params, ext: bool = False) -> bytes:
    tail = PARAMS_EXT_TAIL.pack(MemType.GUEST_PAGES) if ext else b""
    return HDR.pack(Resp.OK_GET_PARAMS, stream_id) + params.encode() + tail


def encode_query_control(values: list[int], stream_id: int = 0) -> bytes:
    return (
        HDR.pack(Resp.OK_QUERY_CONTROL, stream_id)
        + QUERY_CONTROL_RESP.pack(len(values))
        + struct.pack(f"<{len(values)}I", *values)
    )


def encode_control(stream_id: int, value: int) -> bytes:
    return HDR.pack(Resp.OK_GET_CONTROL, stream_id) + CONTROL_ARG.pack(value)


def encode_event(event: EventType, stream_id: int) -> bytes:
    return EVENT.pack(event, stream_id)


@dataclass(frozen=True)
class Config:
    """The config space: version 0 and the two lengths the driver sizes buffers by."""

    max_caps_length: int
    max_resp_length: int
    version: int = field(default=0)

    def encode(self) -> bytes:
        return CONFIG.pack(self.version, self.max_caps_length, self.max_resp_length)
