"""The virtio-gpu wire format (virtio 1.2 §5.7, Linux's uapi virtio_gpu.h): command and
response ids, formats, feature bits and the structs, as pure codecs over bytes.

Every decoder takes the command's readable bytes and raises `ShortCommand` when they
are fewer than the struct needs (QEMU's rule: a short command is ERR_UNSPEC).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

#: Device id (virtio 1.2 §5).
VIRTIO_ID_GPU = 16

# Feature bits (§5.7.3).
VIRTIO_GPU_F_VIRGL = 1 << 0
VIRTIO_GPU_F_EDID = 1 << 1
VIRTIO_GPU_F_RESOURCE_UUID = 1 << 2
VIRTIO_GPU_F_RESOURCE_BLOB = 1 << 3
VIRTIO_GPU_F_CONTEXT_INIT = 1 << 4

#: config.events_read bit: the display configuration changed.
VIRTIO_GPU_EVENT_DISPLAY = 1
#: Scanouts a device may have (the display-info response has room for this many).
MAX_SCANOUTS = 16
#: The cursor is always 64x64 (§5.7.6.10).
CURSOR_SIZE = 64
#: ATTACH_BACKING / CREATE_BLOB entries QEMU accepts per command; we take the same.
MAX_BACKING_ENTRIES = 16384
#: The EDID blob in a GET_EDID response.
EDID_SIZE = 1024

# ctrl_hdr flags.
FLAG_FENCE = 1
FLAG_INFO_RING_IDX = 2


class Cmd(enum.IntEnum):
    GET_DISPLAY_INFO = 0x0100
    RESOURCE_CREATE_2D = 0x0101
    RESOURCE_UNREF = 0x0102
    SET_SCANOUT = 0x0103
    RESOURCE_FLUSH = 0x0104
    TRANSFER_TO_HOST_2D = 0x0105
    RESOURCE_ATTACH_BACKING = 0x0106
    RESOURCE_DETACH_BACKING = 0x0107
    GET_CAPSET_INFO = 0x0108
    GET_CAPSET = 0x0109
    GET_EDID = 0x010A
    RESOURCE_ASSIGN_UUID = 0x010B
    RESOURCE_CREATE_BLOB = 0x010C
    SET_SCANOUT_BLOB = 0x010D
    CTX_CREATE = 0x0200
    CTX_DESTROY = 0x0201
    CTX_ATTACH_RESOURCE = 0x0202
    CTX_DETACH_RESOURCE = 0x0203
    RESOURCE_CREATE_3D = 0x0204
    TRANSFER_TO_HOST_3D = 0x0205
    TRANSFER_FROM_HOST_3D = 0x0206
    SUBMIT_3D = 0x0207
    RESOURCE_MAP_BLOB = 0x0208
    RESOURCE_UNMAP_BLOB = 0x0209
    UPDATE_CURSOR = 0x0300
    MOVE_CURSOR = 0x0301


class Resp(enum.IntEnum):
    OK_NODATA = 0x1100
    OK_DISPLAY_INFO = 0x1101
    OK_CAPSET_INFO = 0x1102
    OK_CAPSET = 0x1103
    OK_EDID = 0x1104
    OK_RESOURCE_UUID = 0x1105
    OK_MAP_INFO = 0x1106
    ERR_UNSPEC = 0x1200
    ERR_OUT_OF_MEMORY = 0x1201
    ERR_INVALID_SCANOUT_ID = 0x1202
    ERR_INVALID_RESOURCE_ID = 0x1203
    ERR_INVALID_CONTEXT_ID = 0x1204
    ERR_INVALID_PARAMETER = 0x1205


class Format(enum.IntEnum):
    """The 2D formats of §5.7.6.8, named in memory byte order; all 4 bytes a pixel."""

    B8G8R8A8_UNORM = 1
    B8G8R8X8_UNORM = 2
    A8R8G8B8_UNORM = 3
    X8R8G8B8_UNORM = 4
    R8G8B8A8_UNORM = 67
    X8B8G8R8_UNORM = 68
    A8B8G8R8_UNORM = 121
    R8G8B8X8_UNORM = 134


BYTES_PER_PIXEL = 4

#: Blob memory types and flags (RESOURCE_CREATE_BLOB).
BLOB_MEM_GUEST = 1
BLOB_MEM_HOST3D = 2
BLOB_MEM_HOST3D_GUEST = 3
BLOB_FLAG_USE_MAPPABLE = 1
BLOB_FLAG_USE_SHAREABLE = 2
BLOB_FLAG_USE_CROSS_DEVICE = 4


class ShortCommand(ValueError):
    """The command's readable bytes are fewer than its struct."""


def _unpack(fmt: struct.Struct, data: bytes | memoryview, offset: int = 0) -> tuple[int, ...]:
    if len(data) < offset + fmt.size:
        raise ShortCommand(f"{len(data)} bytes, {offset + fmt.size} needed")
    return fmt.unpack_from(data, offset)


_HDR = struct.Struct("<IIQIB3x")
HDR_SIZE = _HDR.size  # 24


@dataclass(frozen=True)
class CtrlHeader:
    type: int
    flags: int = 0
    fence_id: int = 0
    ctx_id: int = 0
    ring_idx: int = 0

    @classmethod
    def decode(cls, data: bytes | memoryview) -> CtrlHeader:
        return cls(*_unpack(_HDR, data))

    def encode(self) -> bytes:
        return _HDR.pack(self.type, self.flags, self.fence_id, self.ctx_id, self.ring_idx)

    @property
    def fenced(self) -> bool:
        return bool(self.flags & FLAG_FENCE)

    def response(self, resp: int) -> CtrlHeader:
        """The response's header: a fenced command's answer carries its fence (and
        ring index, when the driver used one) back."""
        if not self.fenced:
            return CtrlHeader(resp)
        flags = FLAG_FENCE | (self.flags & FLAG_INFO_RING_IDX)
        ring = self.ring_idx if self.flags & FLAG_INFO_RING_IDX else 0
        return CtrlHeader(resp, flags, self.fence_id, self.ctx_id, ring)


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    def inside(self, width: int, height: int) -> bool:
        """Within a `width` x `height` surface (Python ints: no wrap-around)."""
        return self.x + self.width <= width and self.y + self.height <= height

    def intersect(self, other: Rect) -> Rect | None:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    @property
    def empty(self) -> bool:
        return self.width == 0 or self.height == 0


_RECT = struct.Struct("<IIII")


def _rect(values: tuple[int, ...]) -> Rect:
    return Rect(values[0], values[1], values[2], values[3])


@dataclass(frozen=True)
class ResourceCreate2D:
    resource_id: int
    format: int
    width: int
    height: int

    _S = struct.Struct("<IIII")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceCreate2D:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class ResourceId:
    """RESOURCE_UNREF, RESOURCE_DETACH_BACKING, RESOURCE_ASSIGN_UUID: an id and padding."""

    resource_id: int

    _S = struct.Struct("<I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceId:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class SetScanout:
    rect: Rect
    scanout_id: int
    resource_id: int

    _S = struct.Struct("<IIIIII")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> SetScanout:
        v = _unpack(cls._S, data, HDR_SIZE)
        return cls(_rect(v[:4]), v[4], v[5])


@dataclass(frozen=True)
class ResourceFlush:
    rect: Rect
    resource_id: int

    _S = struct.Struct("<IIIII4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceFlush:
        v = _unpack(cls._S, data, HDR_SIZE)
        return cls(_rect(v[:4]), v[4])


@dataclass(frozen=True)
class TransferToHost2D:
    rect: Rect
    offset: int
    resource_id: int

    _S = struct.Struct("<IIIIQI4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> TransferToHost2D:
        v = _unpack(cls._S, data, HDR_SIZE)
        return cls(_rect(v[:4]), v[4], v[5])


_MEM_ENTRY = struct.Struct("<QI4x")


def _entries(data: bytes | memoryview, offset: int, count: int) -> tuple[tuple[int, int], ...]:
    if count > MAX_BACKING_ENTRIES:
        raise ShortCommand(f"{count} backing entries, at most {MAX_BACKING_ENTRIES}")
    if len(data) < offset + count * _MEM_ENTRY.size:
        raise ShortCommand(f"{count} backing entries do not fit {len(data)} bytes")
    return tuple(_MEM_ENTRY.unpack_from(data, offset + i * _MEM_ENTRY.size) for i in range(count))


@dataclass(frozen=True)
class AttachBacking:
    resource_id: int
    entries: tuple[tuple[int, int], ...]  # (guest address, length)

    _S = struct.Struct("<II")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> AttachBacking:
        resource_id, count = _unpack(cls._S, data, HDR_SIZE)
        return cls(resource_id, _entries(data, HDR_SIZE + cls._S.size, count))


@dataclass(frozen=True)
class GetEdid:
    scanout_id: int

    _S = struct.Struct("<I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> GetEdid:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class GetCapsetInfo:
    index: int

    _S = struct.Struct("<I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> GetCapsetInfo:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class GetCapset:
    capset_id: int
    version: int

    _S = struct.Struct("<II")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> GetCapset:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class ResourceCreateBlob:
    resource_id: int
    blob_mem: int
    blob_flags: int
    blob_id: int
    size: int
    entries: tuple[tuple[int, int], ...]

    _S = struct.Struct("<IIIIQQ")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceCreateBlob:
        rid, mem, flags, count, blob_id, size = _unpack(cls._S, data, HDR_SIZE)
        return cls(rid, mem, flags, blob_id, size, _entries(data, HDR_SIZE + cls._S.size, count))


@dataclass(frozen=True)
class SetScanoutBlob:
    rect: Rect
    scanout_id: int
    resource_id: int
    width: int
    height: int
    format: int
    strides: tuple[int, int, int, int]
    offsets: tuple[int, int, int, int]

    _S = struct.Struct("<IIII IIIII4x IIII IIII".replace(" ", ""))

    @classmethod
    def decode(cls, data: bytes | memoryview) -> SetScanoutBlob:
        v = _unpack(cls._S, data, HDR_SIZE)
        return cls(
            _rect(v[:4]), v[4], v[5], v[6], v[7], v[8], (v[9], v[10], v[11], v[12]),
            (v[13], v[14], v[15], v[16]),
        )  # fmt: skip


@dataclass(frozen=True)
class UpdateCursor:
    """UPDATE_CURSOR and MOVE_CURSOR share one struct (MOVE ignores the image fields)."""

    scanout_id: int
    x: int
    y: int
    resource_id: int
    hot_x: int
    hot_y: int

    _S = struct.Struct("<III4xIII4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> UpdateCursor:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


# -- 3D (context) commands ----------------------------------------------------------

#: Capset ids (GET_CAPSET_INFO / GET_CAPSET, CTX_CREATE's context_init low byte).
CAPSET_VIRGL = 1
CAPSET_VIRGL2 = 2
CAPSET_CROSS_DOMAIN = 5
#: CTX_CREATE's context_init: the capset id is its low byte.
CONTEXT_INIT_CAPSET_ID_MASK = 0xFF
#: A resource flag (RESOURCE_CREATE_3D): row 0 is the top of the image.
RESOURCE_FLAG_Y_0_TOP = 1


@dataclass(frozen=True)
class CtxCreate:
    context_init: int
    debug_name: bytes

    _S = struct.Struct("<II64s")

    @property
    def capset_id(self) -> int:
        return self.context_init & CONTEXT_INIT_CAPSET_ID_MASK

    @classmethod
    def decode(cls, data: bytes | memoryview) -> CtxCreate:
        nlen, context_init, name = _unpack(cls._S, data, HDR_SIZE)
        return cls(int(context_init), bytes(name)[: min(int(nlen), 64)])


@dataclass(frozen=True)
class CtxResource:
    """CTX_ATTACH_RESOURCE / CTX_DETACH_RESOURCE."""

    resource_id: int

    _S = struct.Struct("<I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> CtxResource:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class ResourceCreate3D:
    resource_id: int
    target: int
    format: int
    bind: int
    width: int
    height: int
    depth: int
    array_size: int
    last_level: int
    nr_samples: int
    flags: int

    _S = struct.Struct("<11I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceCreate3D:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    z: int
    w: int
    h: int
    d: int

    def astuple(self) -> tuple[int, int, int, int, int, int]:
        return (self.x, self.y, self.z, self.w, self.h, self.d)


@dataclass(frozen=True)
class Transfer3D:
    """TRANSFER_TO_HOST_3D / TRANSFER_FROM_HOST_3D."""

    box: Box
    offset: int
    resource_id: int
    level: int
    stride: int
    layer_stride: int

    _S = struct.Struct("<6IQIIII")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Transfer3D:
        v = _unpack(cls._S, data, HDR_SIZE)
        return cls(Box(*v[:6]), v[6], v[7], v[8], v[9], v[10])


SUBMIT_HEAD = struct.Struct("<I4x")


def decode_submit(data: bytes | memoryview) -> memoryview:
    """SUBMIT_3D's command stream (its `size` bytes after the 32-byte head)."""
    (size,) = _unpack(SUBMIT_HEAD, data, HDR_SIZE)
    start = HDR_SIZE + SUBMIT_HEAD.size
    if len(data) < start + size:
        raise ShortCommand(f"a {size}-byte stream in {len(data) - start} bytes")
    return memoryview(data)[start : start + size]


# -- responses -----------------------------------------------------------------------

_PMODE = struct.Struct("<IIIIII")


@dataclass(frozen=True)
class DisplayMode:
    """One scanout of GET_DISPLAY_INFO: its preferred rectangle and whether it is on."""

    rect: Rect
    enabled: bool
    flags: int = 0


DISPLAY_INFO_SIZE = HDR_SIZE + MAX_SCANOUTS * _PMODE.size  # 408


def encode_display_info(header: CtrlHeader, modes: list[DisplayMode]) -> bytes:
    body = bytearray(MAX_SCANOUTS * _PMODE.size)
    for i, mode in enumerate(modes[:MAX_SCANOUTS]):
        r = mode.rect
        _PMODE.pack_into(
            body, i * _PMODE.size, r.x, r.y, r.width, r.height, int(mode.enabled), mode.flags
        )
    return header.encode() + bytes(body)


def decode_display_info(data: bytes | memoryview) -> list[DisplayMode]:
    """The pmodes of a GET_DISPLAY_INFO response (also QEMU's reply on the display
    socket, which carries the same struct)."""
    if len(data) < DISPLAY_INFO_SIZE:
        raise ShortCommand(f"display info of {len(data)} bytes, {DISPLAY_INFO_SIZE} needed")
    modes = []
    for i in range(MAX_SCANOUTS):
        x, y, w, h, enabled, flags = _PMODE.unpack_from(data, HDR_SIZE + i * _PMODE.size)
        modes.append(DisplayMode(Rect(x, y, w, h), bool(enabled), flags))
    return modes


EDID_RESP_SIZE = HDR_SIZE + 8 + EDID_SIZE  # 1056


def encode_edid(header: CtrlHeader, edid: bytes) -> bytes:
    edid = edid[:EDID_SIZE]
    return header.encode() + struct.pack("<I4x", len(edid)) + edid.ljust(EDID_SIZE, b"\0")


def decode_edid(data: bytes | memoryview) -> bytes:
    """The EDID bytes of a GET_EDID response (QEMU's display-socket reply too)."""
    if len(data) < EDID_RESP_SIZE:
        raise ShortCommand(f"EDID response of {len(data)} bytes, {EDID_RESP_SIZE} needed")
    (size,) = struct.unpack_from("<I", data, HDR_SIZE)
    return bytes(data[HDR_SIZE + 8 : HDR_SIZE + 8 + min(size, EDID_SIZE)])


def encode_capset_info(
    header: CtrlHeader, capset_id: int, max_version: int, max_size: int
) -> bytes:
    return header.encode() + struct.pack("<III4x", capset_id, max_version, max_size)


def encode_uuid(header: CtrlHeader, uuid: bytes) -> bytes:
    return header.encode() + uuid


#: config space: events_read, events_clear, num_scanouts, num_capsets.
CONFIG = struct.Struct("<IIII")


# -- context and blob-mapping commands (the 3D range the cross-domain context uses) ----

#: VIRTIO_GPU_SHM_ID_HOST_VISIBLE: the shared-memory region mapped blobs appear in.
SHM_ID_HOST_VISIBLE = 1


@dataclass(frozen=True)
class Submit3D:
    """SUBMIT_3D: the command stream follows the 32-byte struct."""

    commands: bytes

    _S = struct.Struct("<I4x")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Submit3D:
        (size,) = _unpack(cls._S, data, HDR_SIZE)
        start = HDR_SIZE + cls._S.size
        if len(data) < start + size:
            raise ShortCommand(f"SUBMIT_3D of {size} bytes, {len(data) - start} sent")
        return cls(bytes(data[start : start + size]))


@dataclass(frozen=True)
class ResourceMapBlob:
    resource_id: int
    offset: int

    _S = struct.Struct("<I4xQ")

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ResourceMapBlob:
        return cls(*_unpack(cls._S, data, HDR_SIZE))


def encode_map_info(header: CtrlHeader, map_info: int) -> bytes:
    """RESOURCE_MAP_BLOB's OK_MAP_INFO answer."""
    return header.encode() + struct.pack("<I4x", map_info)
