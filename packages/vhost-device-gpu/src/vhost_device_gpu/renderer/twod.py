"""The 2D renderer: each 2D resource is a host pixel buffer that TRANSFER_TO_HOST_2D fills
from the guest's backing pages; a guest blob is the guest's pages themselves. Pixels move
in C (`_pixels`) with the GIL released; every rectangle, offset and stride is checked
here first, in Python integers, so nothing the guest sends can overflow or reach
outside a buffer.

`keep_pixels=False` is the `null` mode: the same checks and answers, no pixel store
(scanouts show black), for CI and for measuring the protocol alone.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from vhost_user_core import GuestMemory, GuestMemoryError

from .. import _pixels
from ..protocol import (
    BLOB_MEM_GUEST,
    BYTES_PER_PIXEL,
    CURSOR_SIZE,
    VIRTIO_GPU_F_RESOURCE_BLOB,
    Format,
    Rect,
    Resp,
)
from .base import CommandError, Renderer, ScanoutSource

log = logging.getLogger(__name__)

#: Host memory the guest's 2D resources may take (QEMU's max_hostmem default).
MAX_HOSTMEM = 256 << 20
#: What a resource costs beyond its pixels, so a flood of tiny ones is bounded too.
RESOURCE_OVERHEAD = 1024

#: Per format: the byte indices of blue, green, red and alpha, and whether the fourth
#: byte is padding (X) rather than alpha.
CHANNELS: dict[int, tuple[int, int, int, int, bool]] = {
    Format.B8G8R8A8_UNORM: (0, 1, 2, 3, False),
    Format.B8G8R8X8_UNORM: (0, 1, 2, 3, True),
    Format.A8R8G8B8_UNORM: (3, 2, 1, 0, False),
    Format.X8R8G8B8_UNORM: (3, 2, 1, 0, True),
    Format.R8G8B8A8_UNORM: (2, 1, 0, 3, False),
    Format.X8B8G8R8_UNORM: (1, 2, 3, 0, True),
    Format.A8B8G8R8_UNORM: (1, 2, 3, 0, False),
    Format.R8G8B8X8_UNORM: (2, 1, 0, 3, True),
}


def to_xrgb(buf: memoryview, format: int) -> None:
    """In place into what QEMU's display takes (x8r8g8b8; the X byte left as it is)."""
    b, g, r, a, _ = CHANNELS[format]
    _pixels.swizzle(buf, b, g, r, a, False)


def to_argb(buf: memoryview, format: int) -> None:
    """In place into A8R8G8B8 with real alpha (opaque for an X format): the cursor."""
    b, g, r, a, padding = CHANNELS[format]
    _pixels.swizzle(buf, b, g, r, a, padding)


@dataclass
class Resource:
    resource_id: int
    format: int | None  # None: a blob (its format comes with SET_SCANOUT_BLOB)
    width: int
    height: int
    pixels: bytearray | None = None
    entries: tuple[tuple[int, int], ...] | None = None
    backing: _pixels.Backing | None = None
    blob_size: int = 0
    uuid: bytes | None = None
    cost: int = RESOURCE_OVERHEAD

    @property
    def blob(self) -> bool:
        return self.format is None

    @property
    def stride(self) -> int:
        return self.width * BYTES_PER_PIXEL


def backing_of(memory: GuestMemory, entries: tuple[tuple[int, int], ...]) -> _pixels.Backing:
    """The guest's entries as one backing, each entry inside guest memory."""
    try:
        return _pixels.Backing(memory.view(addr, length) for addr, length in entries if length)
    except GuestMemoryError as exc:
        raise CommandError(Resp.ERR_UNSPEC, f"backing outside guest memory: {exc}") from exc


class Renderer2D(Renderer):
    name = "2d"
    #: Guest blobs: the guest's pages shown as they are.
    features = VIRTIO_GPU_F_RESOURCE_BLOB

    def __init__(self, *, keep_pixels: bool = True, max_hostmem: int = MAX_HOSTMEM) -> None:
        self.keep_pixels = keep_pixels
        self.max_hostmem = max_hostmem
        self.hostmem = 0
        self.resources: dict[int, Resource] = {}
        self.memory = GuestMemory()

    # -- lookups ---------------------------------------------------------------------

    def _get(self, resource_id: int) -> Resource:
        res = self.resources.get(resource_id)
        if res is None:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"no resource {resource_id}")
        return res

    def _new_id(self, resource_id: int) -> None:
        if resource_id == 0 or resource_id in self.resources:
            raise CommandError(
                Resp.ERR_INVALID_RESOURCE_ID,
                f"resource id {resource_id} is {'reserved' if resource_id == 0 else 'in use'}",
            )

    def _charge(self, cost: int) -> None:
        if self.hostmem + cost > self.max_hostmem:
            raise CommandError(
                Resp.ERR_OUT_OF_MEMORY,
                f"{cost} bytes more would pass the {self.max_hostmem}-byte host memory limit",
            )
        self.hostmem += cost

    def has_resource(self, resource_id: int) -> bool:
        return resource_id in self.resources

    # -- resources -------------------------------------------------------------------

    def memory_changed(self, memory: GuestMemory) -> None:
        self.memory = memory
        for res in self.resources.values():
            if res.entries is None:
                continue
            try:
                res.backing = backing_of(memory, res.entries)
            except CommandError as exc:
                log.warning("resource %d lost its backing: %s", res.resource_id, exc)
                res.backing = None

    def create_2d(self, resource_id: int, format: int, width: int, height: int) -> None:
        self._new_id(resource_id)
        if format not in CHANNELS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"unknown format {format}")
        if width == 0 or height == 0:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"empty resource {width}x{height}")
        size = width * height * BYTES_PER_PIXEL
        cost = RESOURCE_OVERHEAD + (size if self.keep_pixels else 0)
        self._charge(cost)
        try:
            pixels = bytearray(size) if self.keep_pixels else None
        except MemoryError:
            self.hostmem -= cost
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"no host memory for {size} bytes") from None
        self.resources[resource_id] = Resource(
            resource_id, format, width, height, pixels, cost=cost
        )

    def create_blob(
        self, resource_id: int, blob_mem: int, blob_flags: int, size: int,
        entries: tuple[tuple[int, int], ...],
    ) -> None:  # fmt: skip
        if blob_mem != BLOB_MEM_GUEST:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"blob memory {blob_mem}: only guest blobs in 2D"
            )
        self._new_id(resource_id)
        if size == 0:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "a blob of 0 bytes")
        total = sum(length for _, length in entries)
        if total < size:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"blob of {size} bytes on {total} bytes of backing"
            )
        backing = backing_of(self.memory, entries)
        cost = RESOURCE_OVERHEAD + 16 * len(entries)
        self._charge(cost)
        self.resources[resource_id] = Resource(
            resource_id, None, 0, 0, entries=entries, backing=backing, blob_size=size, cost=cost
        )

    def unref(self, resource_id: int) -> None:
        res = self._get(resource_id)
        del self.resources[resource_id]
        self.hostmem -= res.cost

    def attach_backing(self, resource_id: int, entries: tuple[tuple[int, int], ...]) -> None:
        res = self._get(resource_id)
        if res.blob:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "a blob has its backing from creation")
        if res.entries is not None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id} already has backing")
        res.backing = backing_of(self.memory, entries)
        res.entries = entries

    def detach_backing(self, resource_id: int) -> None:
        res = self._get(resource_id)
        if res.blob:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "a blob's backing cannot be detached")
        if res.entries is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id} has no backing")
        res.entries = res.backing = None

    def transfer_to_host_2d(self, resource_id: int, rect: Rect, offset: int) -> None:
        res = self._get(resource_id)
        if res.blob:
            return  # a guest blob is the guest's memory: nothing to copy
        if res.entries is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id} has no backing")
        if res.backing is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id}'s backing is unmapped")
        if not rect.inside(res.width, res.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"{rect} outside the {res.width}x{res.height} resource"
            )
        if rect.empty:
            return
        row = rect.width * BYTES_PER_PIXEL
        last = offset + (rect.height - 1) * res.stride + row
        if last > res.backing.size:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"transfer needs {last} bytes of backing, {res.backing.size} attached",
            )
        if res.pixels is None:
            return
        dst = rect.y * res.stride + rect.x * BYTES_PER_PIXEL
        _pixels.gather(
            res.backing, offset, res.stride, row, rect.height, res.pixels, dst, res.stride
        )

    def check_flush(self, resource_id: int, rect: Rect) -> None:
        res = self._get(resource_id)
        if not res.blob and not rect.inside(res.width, res.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"{rect} outside the {res.width}x{res.height} resource"
            )

    def check_scanout(self, source: ScanoutSource, rect: Rect) -> None:
        res = self._get(source.resource_id)
        if rect.empty:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"an empty scanout {rect}")
        if source.format is None:
            if res.blob:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, "a blob needs SET_SCANOUT_BLOB")
            if not rect.inside(res.width, res.height):
                raise CommandError(
                    Resp.ERR_INVALID_PARAMETER,
                    f"{rect} outside the {res.width}x{res.height} resource",
                )
            return
        if not res.blob:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "SET_SCANOUT_BLOB on a 2D resource")
        if source.format not in CHANNELS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"unknown format {source.format}")
        stride = source.stride or 0
        row = source.width * BYTES_PER_PIXEL
        if source.width == 0 or source.height == 0 or stride < row:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"a {source.width}x{source.height} scanout at stride {stride}",
            )
        end = source.offset + (source.height - 1) * stride + row  # exact: no overflow
        if end > res.blob_size:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"scanout needs {end} bytes of a {res.blob_size}-byte blob",
            )
        if not rect.inside(source.width, source.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"{rect} outside the {source.width}x{source.height} scanout",
            )

    def read_pixels(self, source: ScanoutSource, rect: Rect, dst: memoryview) -> None:
        res = self._get(source.resource_id)
        row = rect.width * BYTES_PER_PIXEL
        if source.format is None:
            assert res.format is not None
            if res.pixels is None:
                dst[:] = bytes(len(dst))  # null: black
                return
            start = rect.y * res.stride + rect.x * BYTES_PER_PIXEL
            _pixels.copy_rect(res.pixels, start, res.stride, row, rect.height, dst, 0, row)
            to_xrgb(dst, res.format)
            return
        if res.backing is None or not self.keep_pixels:
            dst[:] = bytes(len(dst))
            return
        stride = source.stride or row
        start = source.offset + rect.y * stride + rect.x * BYTES_PER_PIXEL
        _pixels.gather(res.backing, start, stride, row, rect.height, dst, 0, row)
        to_xrgb(dst, source.format)

    def cursor_image(self, resource_id: int) -> bytes:
        res = self._get(resource_id)
        if res.blob or (res.width, res.height) != (CURSOR_SIZE, CURSOR_SIZE):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"a cursor is {CURSOR_SIZE}x{CURSOR_SIZE}, resource {resource_id} is not",
            )
        assert res.format is not None
        size = CURSOR_SIZE * CURSOR_SIZE * BYTES_PER_PIXEL
        image = bytearray(res.pixels) if res.pixels is not None else bytearray(size)
        to_argb(memoryview(image), res.format)
        return bytes(image)

    def assign_uuid(self, resource_id: int) -> bytes:
        res = self._get(resource_id)
        if res.uuid is None:
            res.uuid = uuid.uuid4().bytes
        return res.uuid

    def reset(self) -> None:
        self.resources.clear()
        self.hostmem = 0


class NullRenderer(Renderer2D):
    """`-g null`: every command checked and answered as 2D does, no pixels kept."""

    name = "null"

    def __init__(self) -> None:
        super().__init__(keep_pixels=False)
