"""A guest resource: the guest pages RESOURCE_CREATE named, as planes of memory entries.

The device reads and writes a resource only while it is queued (the draft's buffer
lifecycle), and only through `GuestMemory`, which bounds-checks every entry against
the regions mapped now: a resource outlives memory-table changes as addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from vhost_user_core import GuestMemory

from .protocol import MemEntry, PlanesLayout, QueueType


@dataclass(frozen=True)
class Resource:
    id: int
    queue: QueueType
    layout: PlanesLayout
    plane_offsets: tuple[int, ...]
    planes: tuple[tuple[MemEntry, ...], ...]  # one buffer for SINGLE_BUFFER, else per plane

    def _buffer(self, plane: int) -> tuple[tuple[MemEntry, ...], int]:
        """The entries plane `plane` lives in, and its offset there."""
        offset = self.plane_offsets[plane] if plane < len(self.plane_offsets) else 0
        if self.layout == PlanesLayout.SINGLE_BUFFER:
            return self.planes[0], offset
        return self.planes[plane], offset

    def capacity(self, plane: int = 0) -> int:
        """Bytes plane `plane` has room for."""
        entries, offset = self._buffer(plane)
        return max(0, sum(e.length for e in entries) - offset)

    def read(self, memory: GuestMemory, plane: int, size: int) -> bytes:
        """`size` bytes of plane `plane` (GuestMemoryError if an entry is not mapped)."""
        entries, offset = self._buffer(plane)
        out = bytearray()
        for entry in entries:
            if offset >= entry.length:
                offset -= entry.length
                continue
            take = min(entry.length - offset, size - len(out))
            out += memory.read(entry.addr + offset, take)
            offset = 0
            if len(out) == size:
                break
        return bytes(out)

    def write(self, memory: GuestMemory, plane: int, data: bytes | memoryview) -> int:
        """Scatter `data` into plane `plane`; returns the bytes that fit."""
        entries, offset = self._buffer(plane)
        view, done = memoryview(data), 0
        for entry in entries:
            if offset >= entry.length:
                offset -= entry.length
                continue
            take = min(entry.length - offset, len(view) - done)
            memory.write(entry.addr + offset, view[done : done + take])
            done += take
            offset = 0
            if done == len(view):
                break
        return done
