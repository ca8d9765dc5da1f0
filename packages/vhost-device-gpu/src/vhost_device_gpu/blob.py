"""Blob resources the device itself keeps, apart from the renderer's: host blobs
(memfd-backed memory a context allocated, or an fd the compositor sent) and the
guest-memory entries of guest blobs, which a context uses as its rings.

A host blob becomes guest-visible through vhost-user shared memory: RESOURCE_MAP_BLOB
asks the VMM (SHMEM_MAP on the backend channel) to map its fd at the guest's offset of
the host-visible region (shmid 1), UNMAP_BLOB or the resource's end takes it away.
A host blob can also be scanned out (SET_SCANOUT_BLOB): its pixels are read from the
fd's pages, with the same checks as a guest blob's.
"""

from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass

from vhost_user_core import GuestMemory, GuestMemoryError, SharedMemory, SharedMemoryError

from . import _pixels
from .protocol import BLOB_FLAG_USE_MAPPABLE, BYTES_PER_PIXEL, Rect, Resp
from .renderer.base import CommandError, ScanoutSource
from .renderer.twod import CHANNELS, to_xrgb

log = logging.getLogger(__name__)

#: virtio-gpu's host-visible shared-memory region id (VIRTIO_GPU_SHM_ID_HOST_VISIBLE).
SHM_ID_HOST_VISIBLE = 1
#: Its size: what the VMM reserves (a BAR) for mapped host blobs.
HOST_VISIBLE_SIZE = 256 << 20
#: Host memory all host blobs of a connection may take (QEMU's max_hostmem default).
MAX_HOST_BLOB_MEMORY = 256 << 20
#: Host blobs one connection may hold (each is an fd of the daemon's).
MAX_HOST_BLOBS = 512
#: map_info bit that makes a mapping writable (rutabaga's MAP_ACCESS_WRITE).
MAP_ACCESS_WRITE = 0x20


def page_round(size: int) -> int:
    return (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


@dataclass
class HostBlob:
    resource_id: int
    fd: int  # owned: closed when the resource goes
    size: int
    map_info: int
    blob_flags: int
    mapped_at: int | None = None

    @property
    def writable(self) -> bool:
        return bool(self.map_info & MAP_ACCESS_WRITE)


@dataclass(frozen=True)
class GuestBlob:
    entries: tuple[tuple[int, int], ...]
    size: int


class Blobs:
    """One connection's host blobs and guest-blob entries."""

    def __init__(self, max_memory: int = MAX_HOST_BLOB_MEMORY) -> None:
        self.max_memory = max_memory
        self.memory_used = 0
        self.host: dict[int, HostBlob] = {}
        self.guest: dict[int, GuestBlob] = {}
        self.memory = GuestMemory()
        self.shmem: SharedMemory | None = None

    # -- records ---------------------------------------------------------------------

    def record_guest(
        self, resource_id: int, entries: tuple[tuple[int, int], ...], size: int
    ) -> None:
        self.guest[resource_id] = GuestBlob(entries, size)

    def reserve(self, size: int) -> None:
        """Charge `size` bytes of host memory (and one blob) before allocating them."""
        if len(self.host) >= MAX_HOST_BLOBS:
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"more than {MAX_HOST_BLOBS} host blobs")
        if self.memory_used + size > self.max_memory:
            raise CommandError(
                Resp.ERR_OUT_OF_MEMORY,
                f"{size} bytes more would pass the {self.max_memory}-byte host blob limit",
            )
        self.memory_used += size

    def add_host(self, blob: HostBlob) -> None:
        """Take `blob` (its fd and the memory `reserve` charged for it)."""
        self.host[blob.resource_id] = blob

    def get_host(self, resource_id: int) -> HostBlob:
        blob = self.host.get(resource_id)
        if blob is None:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"no host blob {resource_id}")
        return blob

    def forget(self, resource_id: int) -> bool:
        """RESOURCE_UNREF: drop the record (unmapping and closing a host blob); True
        if the resource was a host blob (the renderer never knew it)."""
        self.guest.pop(resource_id, None)
        blob = self.host.pop(resource_id, None)
        if blob is None:
            return False
        if blob.mapped_at is not None:
            self._unmap(blob)
        self.memory_used -= blob.size
        os.close(blob.fd)
        return True

    def ring(self, resource_id: int) -> memoryview:
        """The first entry of a guest blob, where a context's ring replies go."""
        blob = self.guest.get(resource_id)
        if blob is None or not blob.entries:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"{resource_id} is no guest blob")
        addr, length = blob.entries[0]
        try:
            return self.memory.view(addr, length)
        except GuestMemoryError as exc:
            raise CommandError(Resp.ERR_UNSPEC, f"ring {resource_id}: {exc}") from exc

    # -- RESOURCE_MAP_BLOB / UNMAP_BLOB ------------------------------------------------

    def map(self, resource_id: int, offset: int) -> int:
        """Map a host blob at `offset` of the host-visible region; its map_info."""
        blob = self.get_host(resource_id)
        if not blob.blob_flags & BLOB_FLAG_USE_MAPPABLE:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"blob {resource_id} is not mappable")
        if blob.mapped_at is not None:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"blob {resource_id} is mapped already")
        if self.shmem is None:
            raise CommandError(Resp.ERR_UNSPEC, "the VMM has no host-visible region")
        try:
            self.shmem.map(
                SHM_ID_HOST_VISIBLE, blob.fd, shm_offset=offset,
                length=page_round(blob.size), writable=blob.writable,
            )  # fmt: skip
        except SharedMemoryError as exc:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"map blob {resource_id}: {exc}"
            ) from exc
        blob.mapped_at = offset
        return blob.map_info

    def unmap(self, resource_id: int) -> None:
        blob = self.get_host(resource_id)
        if blob.mapped_at is None:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"blob {resource_id} is not mapped")
        self._unmap(blob)

    def _unmap(self, blob: HostBlob) -> None:
        assert blob.mapped_at is not None
        offset, blob.mapped_at = blob.mapped_at, None
        if self.shmem is None:
            return
        try:
            self.shmem.unmap(SHM_ID_HOST_VISIBLE, offset, page_round(blob.size))
        except SharedMemoryError as exc:
            log.warning("unmap of blob %d at %#x: %s", blob.resource_id, offset, exc)

    # -- scanout -----------------------------------------------------------------------

    def check_scanout(self, source: ScanoutSource, rect: Rect) -> None:
        blob = self.get_host(source.resource_id)
        if source.format is None or source.format not in CHANNELS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "a host blob needs SET_SCANOUT_BLOB")
        stride = source.stride or 0
        row = source.width * BYTES_PER_PIXEL
        if rect.empty or source.width == 0 or source.height == 0 or stride < row:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"a {source.width}x{source.height} scanout"
            )
        end = source.offset + (source.height - 1) * stride + row
        if end > blob.size or not rect.inside(source.width, source.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"scanout needs {end} bytes of a {blob.size}-byte blob"
            )

    def check_flush(self, resource_id: int, _rect: Rect) -> None:
        self.get_host(resource_id)

    def read_pixels(self, source: ScanoutSource, rect: Rect, dst: memoryview) -> None:
        blob = self.get_host(source.resource_id)
        assert source.format is not None
        row = rect.width * BYTES_PER_PIXEL
        stride = source.stride or row
        start = source.offset + rect.y * stride + rect.x * BYTES_PER_PIXEL
        span = (rect.height - 1) * stride + row
        pixels = bytearray(os.pread(blob.fd, span, start))  # checked inside the blob
        if len(pixels) < span:  # the compositor's file shrank under us
            pixels.extend(bytes(span - len(pixels)))
        backing = _pixels.Backing([memoryview(pixels)])
        _pixels.gather(backing, 0, stride, row, rect.height, dst, 0, row)
        to_xrgb(dst, source.format)

    # -- connection events -------------------------------------------------------------

    def memory_changed(self, memory: GuestMemory) -> None:
        self.memory = memory

    def reset(self) -> None:
        """Device reset: the VMM has dropped the mappings; close every host blob."""
        for blob in self.host.values():
            os.close(blob.fd)
        self.host.clear()
        self.guest.clear()
        self.memory_used = 0
