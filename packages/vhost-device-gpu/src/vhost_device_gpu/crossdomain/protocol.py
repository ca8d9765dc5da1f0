"""The cross-domain context's wire format (capset 5): what the guest proxy (sommelier,
wayland-proxy-virtwl) puts in SUBMIT_3D and what the host writes back into the guest's
ring resources. Pure codecs over bytes, no I/O; `parse_commands` splits a command
buffer and raises `CrossDomainProtocolError` on anything malformed, which fails the
context (never the daemon).

Layouts follow rutabaga's cross_domain_protocol (the version the vhost-device fork
pins, v0.1.75): an 8-byte header (cmd u8, ring_idx u8, cmd_size u16, pad u32), commands
concatenated, each parsed by prefix and skipped by its cmd_size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# The capset id is virtio-gpu's; re-exported for the context's users.
from ..protocol import CAPSET_CROSS_DOMAIN as CAPSET_CROSS_DOMAIN

#: What GET_CAPSET_INFO reports for the capset.
CAPSET_VERSION = 1

# Commands (version 1: up to WRITE).
CMD_INIT = 1
CMD_GET_IMAGE_REQUIREMENTS = 2
CMD_POLL = 3
CMD_SEND = 4
CMD_RECEIVE = 5
CMD_READ = 6
CMD_WRITE = 7

#: Channel types; the capabilities' supported_channels has bit `1 << type` set.
CHANNEL_NONE = 0
CHANNEL_WAYLAND = 1

#: The guest's rings (the ring_idx of its fences): metadata queries answered at once,
#: and the channel ring, whose fence waits for the compositor.
QUERY_RING = 0
CHANNEL_RING = 1
NUM_RINGS = 2

MAX_IDENTIFIERS = 28
# Identifier types.
ID_TYPE_VIRTGPU_BLOB = 1
ID_TYPE_VIRTGPU_SYNC = 2
ID_TYPE_READ_PIPE = 3
ID_TYPE_WRITE_PIPE = 4

#: Ids of read pipes (guest-created) start after this one.
PIPE_READ_START = 0x8000_0000

# map_info of host blobs (virtio_gpu.h VIRTIO_GPU_MAP_CACHE_* and rutabaga's access bits).
MAP_CACHE_CACHED = 0x01
MAP_ACCESS_READ = 0x10
MAP_ACCESS_WRITE = 0x20
MAP_ACCESS_RW = MAP_ACCESS_READ | MAP_ACCESS_WRITE

HEADER = struct.Struct("<BBHI")
_INIT = struct.Struct("<III")
_INIT_LEGACY = struct.Struct("<II")
_IMAGE_REQ = struct.Struct("<IIII")
_SEND_RECEIVE = struct.Struct(f"<II{MAX_IDENTIFIERS}I{MAX_IDENTIFIERS}I{MAX_IDENTIFIERS}I")
_READ_WRITE = struct.Struct("<IIII")
CAPABILITIES = struct.Struct("<IIII")
IMAGE_REQUIREMENTS = struct.Struct("<4I4IQQIIii")

SEND_RECEIVE_SIZE = HEADER.size + _SEND_RECEIVE.size  # 352
READ_WRITE_SIZE = HEADER.size + _READ_WRITE.size  # 24
#: The most data one RECEIVE carries: a 4 KiB ring page less its header.
MAX_RECEIVE_DATA = 4096 - SEND_RECEIVE_SIZE  # 3744


class CrossDomainProtocolError(ValueError):
    """A malformed cross-domain command: its context fails."""


@dataclass(frozen=True)
class Init:
    query_ring_id: int
    channel_ring_id: int
    channel_type: int


@dataclass(frozen=True)
class GetImageRequirements:
    width: int
    height: int
    drm_format: int
    flags: int


@dataclass(frozen=True)
class Poll:
    pass


@dataclass(frozen=True)
class Identifier:
    id: int
    type: int
    size: int = 0


@dataclass(frozen=True)
class Send:
    identifiers: tuple[Identifier, ...]
    data: bytes


@dataclass(frozen=True)
class Write:
    identifier: int
    hang_up: bool
    data: bytes


Command = Init | GetImageRequirements | Poll | Send | Write


def capabilities(channels: int) -> bytes:
    """GET_CAPSET 5: version 1, the channel bitmask, no dma-buf, no external memory
    (the memfd allocator has neither)."""
    return CAPABILITIES.pack(CAPSET_VERSION, channels, 0, 0)


def _body(cmd: memoryview, fmt: struct.Struct, name: str) -> tuple[int, ...]:
    if len(cmd) < HEADER.size + fmt.size:
        raise CrossDomainProtocolError(
            f"{name} of {len(cmd)} bytes, {HEADER.size + fmt.size} needed"
        )
    return fmt.unpack_from(cmd, HEADER.size)


def _data(cmd: memoryview, offset: int, size: int, name: str) -> bytes:
    if offset + size > len(cmd):
        raise CrossDomainProtocolError(
            f"{name} carries {size} bytes of data in a {len(cmd)}-byte command"
        )
    return bytes(cmd[offset : offset + size])


def parse_command(cmd: memoryview) -> Command:
    """One command (its cmd_size bytes, header included)."""
    kind = cmd[0]
    if kind == CMD_INIT:
        if len(cmd) >= HEADER.size + _INIT.size:
            return Init(*_body(cmd, _INIT, "INIT"))
        query, channel_type = _body(cmd, _INIT_LEGACY, "INIT")
        return Init(query, query, channel_type)  # the legacy form: one ring for both
    if kind == CMD_GET_IMAGE_REQUIREMENTS:
        return GetImageRequirements(*_body(cmd, _IMAGE_REQ, "GET_IMAGE_REQUIREMENTS"))
    if kind == CMD_POLL:
        return Poll()
    if kind == CMD_SEND:
        v = _body(cmd, _SEND_RECEIVE, "SEND")
        count, size = v[0], v[1]
        if count > MAX_IDENTIFIERS:
            raise CrossDomainProtocolError(f"SEND with {count} identifiers, at most 28")
        ids, types, sizes = v[2:30], v[30:58], v[58:86]
        idents = tuple(Identifier(ids[i], types[i], sizes[i]) for i in range(count))
        return Send(idents, _data(cmd, SEND_RECEIVE_SIZE, size, "SEND"))
    if kind == CMD_WRITE:
        identifier, hang_up, size, _pad = _body(cmd, _READ_WRITE, "WRITE")
        return Write(identifier, bool(hang_up), _data(cmd, READ_WRITE_SIZE, size, "WRITE"))
    raise CrossDomainProtocolError(f"unknown cross-domain command {kind}")


def parse_commands(buffer: bytes | memoryview) -> list[Command]:
    """Every command of a SUBMIT_3D buffer, in order. Each header's cmd_size must
    cover at least the header and stay inside the buffer (a zero size would loop)."""
    view = memoryview(buffer)
    commands: list[Command] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < HEADER.size:
            raise CrossDomainProtocolError(f"{len(view) - offset} stray bytes after the commands")
        _kind, _ring, size, _pad = HEADER.unpack_from(view, offset)
        if size < HEADER.size or offset + size > len(view):
            raise CrossDomainProtocolError(
                f"command at {offset} says {size} bytes; {len(view) - offset} are left"
            )
        commands.append(parse_command(view[offset : offset + size]))
        offset += size
    return commands


# -- what the host writes into the rings ----------------------------------------------


def encode_receive(identifiers: list[Identifier], data: bytes) -> bytes:
    """A RECEIVE (compositor → guest): its data and the fds it came with, as ids."""
    if len(identifiers) > MAX_IDENTIFIERS or len(data) > MAX_RECEIVE_DATA:
        raise CrossDomainProtocolError("RECEIVE too large")
    pad = [0] * (MAX_IDENTIFIERS - len(identifiers))
    body = _SEND_RECEIVE.pack(
        len(identifiers),
        len(data),
        *([i.id for i in identifiers] + pad),
        *([i.type for i in identifiers] + pad),
        *([i.size for i in identifiers] + pad),
    )
    return HEADER.pack(CMD_RECEIVE, 0, 0, 0) + body + data


def encode_read(identifier: int, data: bytes, hang_up: bool) -> bytes:
    """A READ (host pipe → guest): data from a read pipe, hang_up once it is at EOF."""
    body = _READ_WRITE.pack(identifier, int(hang_up), len(data), 0)
    return HEADER.pack(CMD_READ, 0, 0, 0) + body + data


@dataclass(frozen=True)
class ImageRequirements:
    strides: tuple[int, int, int, int]
    offsets: tuple[int, int, int, int]
    modifier: int
    size: int
    blob_id: int
    map_info: int
    memory_idx: int = -1
    physical_device_idx: int = -1

    def encode(self) -> bytes:
        return IMAGE_REQUIREMENTS.pack(
            *self.strides, *self.offsets, self.modifier, self.size, self.blob_id,
            self.map_info, self.memory_idx, self.physical_device_idx,
        )  # fmt: skip


def fourcc(code: str) -> int:
    """A DRM fourcc as drm_fourcc.h builds it."""
    a, b, c, d = code.encode()
    return a | b << 8 | c << 16 | d << 24


#: Single-plane DRM formats the memfd allocator lays out, and their bytes per pixel.
BYTES_PER_PIXEL: dict[int, int] = {
    fourcc("R8  "): 1,
    fourcc("GR88"): 2,
    fourcc("RG16"): 2,
    fourcc("BG24"): 3,
    fourcc("RG24"): 3,
    fourcc("AR24"): 4,
    fourcc("XR24"): 4,
    fourcc("AB24"): 4,
    fourcc("XB24"): 4,
    fourcc("RA24"): 4,
    fourcc("BA24"): 4,
    fourcc("AR30"): 4,
    fourcc("XR30"): 4,
    fourcc("AB30"): 4,
    fourcc("XB30"): 4,
}
