"""Inflight I/O tracking (vhost-user.rst, "Inflight I/O tracking"; split rings only).

A device that completes requests out of order cannot be resumed from the avail ring
alone after a crash: the entries of requests still in flight may have been
overwritten by the driver's newer ones. With `ProtocolFeature.INFLIGHT_SHMFD` the
backend keeps, in a memfd the front-end holds on to (GET_INFLIGHT_FD), which
descriptor heads it has popped and not yet returned; a restarted backend gets the
same memory back (SET_INFLIGHT_FD) and resubmits them, oldest first.

Per queue, the region is a 16-byte header (features, version, desc_num,
last_batch_head, used_idx) and one 16-byte entry per descriptor (inflight, next,
counter), each queue's part rounded up to 64 bytes. The crash window between the
used ring's index and the region's `used_idx` is closed the spec's way: the last
batch of returned heads is chained from `last_batch_head` before the used index
moves, so recovery can clear exactly those.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence

from .errors import ProtocolError

HEADER = struct.Struct("<QHHHH")  # features, version, desc_num, last_batch_head, used_idx
DESC = struct.Struct("<B5xHQ")  # inflight, next, counter
VERSION = 1
ALIGN = 64
_VERSION_AT, _DESC_NUM_AT, _LAST_BATCH_AT, _USED_IDX_AT = 8, 10, 12, 14


def queue_region_size(queue_size: int) -> int:
    size = HEADER.size + DESC.size * queue_size
    return (size + ALIGN - 1) // ALIGN * ALIGN


class QueueInflight:
    """One queue's part of the region, as its `Vring` updates it."""

    def __init__(self, buf: memoryview, desc_num: int) -> None:
        self._buf = buf
        self.desc_num = desc_num
        self.counter = 0
        #: Entries the last `recover` found completed but not yet cleared (a crash
        #: between moving the used index and clearing them): nothing to resubmit.
        self.settled = 0

    def _u16(self, at: int) -> int:
        return int.from_bytes(self._buf[at : at + 2], "little")

    def _set16(self, at: int, value: int) -> None:
        self._buf[at : at + 2] = (value & 0xFFFF).to_bytes(2, "little")

    def _entry(self, head: int) -> int:
        return HEADER.size + DESC.size * head

    @property
    def version(self) -> int:
        return self._u16(_VERSION_AT)

    @property
    def used_idx(self) -> int:
        return self._u16(_USED_IDX_AT)

    def is_inflight(self, head: int) -> bool:
        return bool(self._buf[self._entry(head)])

    def popped(self, heads: Sequence[int]) -> None:
        """The device took these chains from the avail ring."""
        for head in heads:
            if head < self.desc_num:
                at = self._entry(head)
                DESC.pack_into(self._buf, at, 1, 0, self.counter)
                self.counter += 1

    def completing(self, heads: Sequence[int]) -> None:
        """Before the used index moves: chain the batch from last_batch_head."""
        last = self._u16(_LAST_BATCH_AT)
        for head in heads:
            if head < self.desc_num:
                self._set16(self._entry(head) + 6, last)
                last = head
        self._set16(_LAST_BATCH_AT, last)

    def completed(self, heads: Sequence[int], used_idx: int) -> None:
        """After the used index moved to `used_idx`."""
        for head in heads:
            if head < self.desc_num:
                self._buf[self._entry(head)] = 0
        self._set16(_USED_IDX_AT, used_idx)

    def recover(self, used_idx: int, ring_size: int) -> list[int]:
        """At a ring's start, with the used ring's index: the heads to resubmit,
        oldest first. A fresh region is initialised instead (nothing to resubmit)."""
        if self.version == 0:
            HEADER.pack_into(self._buf, 0, 0, VERSION, self.desc_num, 0, used_idx)
            return []
        if self.version != VERSION:
            raise ProtocolError(f"inflight region version {self.version}, not {VERSION}")
        done = (used_idx - self.used_idx) & 0xFFFF
        self.settled = 0
        if done:
            # Crashed between moving the used index and clearing the batch's entries.
            head = self._u16(_LAST_BATCH_AT)
            for _ in range(min(done, self.desc_num)):
                if head >= self.desc_num:
                    break
                self.settled += self._buf[self._entry(head)]
                self._buf[self._entry(head)] = 0
                head = self._u16(self._entry(head) + 6)
            self._set16(_USED_IDX_AT, used_idx)
        entries = []
        for head in range(self.desc_num):
            inflight, _next, counter = DESC.unpack_from(self._buf, self._entry(head))
            if inflight:
                if head >= ring_size:
                    raise ProtocolError(f"inflight head {head} outside a {ring_size}-entry ring")
                entries.append((counter, head))
        entries.sort()
        self.counter = entries[-1][0] + 1 if entries else 0
        return [head for _, head in entries]


class InflightRegion:
    """The whole shared region: one `QueueInflight` per queue."""

    def __init__(self, fd: int, size: int, offset: int, num_queues: int, queue_size: int) -> None:
        need = queue_region_size(queue_size) * num_queues
        if size < need:
            raise ProtocolError(f"inflight region of {size} bytes, {need} needed")
        try:
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, offset=offset)
        except (OSError, ValueError) as exc:
            raise ProtocolError(f"cannot map the inflight region: {exc}") from exc
        self.fd = fd
        self.size = size
        self.num_queues = num_queues
        self.queue_size = queue_size
        self._view = memoryview(self._map)
        step = queue_region_size(queue_size)
        self.queues = [
            QueueInflight(self._view[i * step : (i + 1) * step], queue_size)
            for i in range(num_queues)
        ]

    @classmethod
    def create(cls, num_queues: int, queue_size: int) -> InflightRegion:
        """GET_INFLIGHT_FD: a zeroed memfd for the front-end to keep."""
        size = queue_region_size(queue_size) * num_queues
        fd = os.memfd_create("vhost-inflight", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size, 0, num_queues, queue_size)
        except BaseException:
            os.close(fd)
            raise

    def queue(self, index: int) -> QueueInflight | None:
        return self.queues[index] if 0 <= index < len(self.queues) else None

    def close(self) -> None:
        for queue in self.queues:
            queue._buf.release()
        self._view.release()
        try:
            self._map.close()
        except BufferError:
            pass  # a view is still out; the mapping goes with the last of them
        os.close(self.fd)
