"""A virtqueue plus its vhost-user state: kick/call fds, enabled, started."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import QueueError
from .virtqueue import ChainBatch, Virtqueue

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)


class Vring:
    """What a device's `handle_queue` receives.

    A ring is processed only while it is *started* (kick fd received, addresses valid)
    and *enabled* (SET_VRING_ENABLE, or implicitly when PROTOCOL_FEATURES is not
    negotiated). `batches()` runs the EVENT_IDX-safe loop; `complete()` returns
    buffers and interrupts the guest only when it asked for it.
    """

    def __init__(self, index: int, max_size: int, worker: Worker) -> None:
        self.index = index
        self.queue = Virtqueue(index, max_size)
        self.worker = worker
        self.kick_fd: int | None = None
        self.call_fd: int | None = None
        self.err_fd: int | None = None
        self.enabled = False
        self.started = False
        #: Whether the kick fd is in the worker's epoll set (maintained by the session).
        self.worker_watching = False

    @property
    def ready(self) -> bool:
        return self.started and self.queue.configured

    @property
    def active(self) -> bool:
        return self.ready and self.enabled and not self.queue.broken

    def signal(self) -> None:
        """Interrupt the guest unconditionally (config change, errors)."""
        if self.call_fd is not None:
            os.eventfd_write(self.call_fd, 1)

    def signal_used(self) -> None:
        """Interrupt the guest if the entries added since last time warrant it."""
        if self.call_fd is not None and self.queue.needs_notification():
            os.eventfd_write(self.call_fd, 1)

    def batches(self, limit: int = 0) -> Iterator[ChainBatch]:
        """Yield batches until the ring is empty and notifications are back on.

        With EVENT_IDX the driver may skip kicks while we have notifications off, so
        we re-check for work after re-enabling them, as the spec requires.
        """
        queue = self.queue
        try:
            while self.active:
                queue.disable_notification()
                batch = self._pop(limit)
                if batch is None:
                    return
                if len(batch):
                    yield batch
                    continue
                if not queue.enable_notification():
                    return
        finally:
            if self.active:
                queue.enable_notification()

    def poll(self, limit: int = 0) -> ChainBatch | tuple[()]:
        """Pop up to `limit` (0: all) chains the driver has posted, leaving its kicks
        off: for a device that wakes on its own schedule while busy (a playing sound
        stream takes new buffers at each period, vsock fills rx buffers when it has
        data) and so saves a wake-up per buffer. `batches()`, or
        `queue.enable_notification()`, turns kicks back on when it needs them."""
        if not self.active:
            return ()
        self.queue.disable_notification()
        return self._pop(limit) or ()

    def rewind(self, count: int) -> None:
        """Put the last `count` popped chains back on the ring, unused, to be popped
        again later (e.g. rx buffers popped in a batch that had less to carry)."""
        self.queue.next_avail = (self.queue.next_avail - count) & 0xFFFF

    def _pop(self, limit: int = 0) -> ChainBatch | None:
        """Pop up to `limit` chains; None if the guest broke the ring (reported once:
        the queue yields nothing more until it is reset)."""
        try:
            return self.queue.pop(limit)
        except QueueError as exc:
            log.error("queue %d: %s; the ring is stopped until reset", self.index, exc)
            self.report_error()
            return None

    def complete(self, batch: ChainBatch, lengths: Sequence[int]) -> None:
        self.queue.add_used_batch(batch, lengths)
        self.signal_used()

    def complete_one(self, head: int, length: int) -> None:
        self.queue.add_used(head, length)
        self.signal_used()

    def report_error(self) -> None:
        if self.err_fd is not None:
            os.eventfd_write(self.err_fd, 1)

    def close_fds(self) -> None:
        for name in ("kick_fd", "call_fd", "err_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
