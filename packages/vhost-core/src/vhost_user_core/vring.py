"""A virtqueue plus its vhost-user state: kick/call fds, enabled, started.

A device sees a `Vring` through its public methods and read-only properties only; the
fds and the started/enabled state are the session's to change (its `_`-prefixed
methods), the split ring itself the framework's (`queue`, for a device's Cython).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .errors import QueueError
from .virtqueue import ChainBatch, Virtqueue

if TYPE_CHECKING:
    from .inflight import QueueInflight
    from .worker import Worker

log = logging.getLogger(__name__)


class Vring:
    """What a device's `handle_queue` receives.

    A ring is processed only while it is *started* (kick fd received, addresses valid)
    and *enabled* (SET_VRING_ENABLE, or implicitly when PROTOCOL_FEATURES is not
    negotiated). `batches()` runs the EVENT_IDX-safe loop; `complete()` returns
    buffers and interrupts the guest only when it asked for it; `poll()`, `rewind()`
    and `enable_notification()` serve a device that takes buffers on its own schedule.
    """

    __slots__ = (
        "_index",
        "_queue",
        "_worker",
        "_kick_fd",
        "_call_fd",
        "_err_fd",
        "_enabled",
        "_started",
        "_inflight",
        "_resubmit",
    )

    def __init__(self, index: int, max_size: int, worker: Worker) -> None:
        self._index = index
        self._queue = Virtqueue(index, max_size)
        self._worker = worker
        self._kick_fd: int | None = None
        self._call_fd: int | None = None
        self._err_fd: int | None = None
        self._enabled = False
        self._started = False
        #: This queue's part of the inflight region (INFLIGHT_SHMFD), if any.
        self._inflight: QueueInflight | None = None
        #: Heads a restarted backend takes again before the avail ring's.
        self._resubmit: list[int] = []

    # -- what a device reads ----------------------------------------------------------

    @property
    def index(self) -> int:
        """The queue's number (0 for the device's first queue)."""
        return self._index

    @property
    def worker(self) -> Worker:
        """The worker thread that owns this ring: arm its timers, watch its fds here."""
        return self._worker

    @property
    def queue(self) -> Virtqueue:
        """The split ring itself, for a device's own Cython that cimports
        `vhost_user_core.virtqueue` (`push_used`, `notify_due`); Python device code uses
        this class's methods instead."""
        return self._queue

    @property
    def call_fd(self) -> int | None:
        """The guest's interrupt eventfd (None: none given), for a device's Cython that
        interrupts once after `push_used`; Python code uses `complete()` / `signal()`."""
        return self._call_fd

    @property
    def kick_fd(self) -> int | None:
        return self._kick_fd

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def started(self) -> bool:
        return self._started

    @property
    def ready(self) -> bool:
        """Started with valid addresses: the ring takes buffers back (`complete`)."""
        return self._started and self._queue.configured

    @property
    def active(self) -> bool:
        """Ready, enabled and not broken by the guest: the ring yields buffers."""
        return self.ready and self._enabled and not self._queue.broken

    # -- taking buffers --------------------------------------------------------------

    def batches(self, limit: int = 0) -> Iterator[ChainBatch]:
        """Yield batches until the ring is empty and notifications are back on.

        With EVENT_IDX the driver may skip kicks while we have notifications off, so
        we re-check for work after re-enabling them, as the spec requires.
        """
        queue = self._queue
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
        `enable_notification()`, turns kicks back on when it needs them."""
        if not self.active:
            return ()
        self._queue.disable_notification()
        return self._pop(limit) or ()

    def rewind(self, count: int) -> None:
        """Put the last `count` popped chains back on the ring, unused, to be popped
        again later (e.g. rx buffers popped in a batch that had less to carry)."""
        self._queue.next_avail = (self._queue.next_avail - count) & 0xFFFF

    def enable_notification(self) -> bool:
        """Ask the driver to kick again when it posts buffers (after `poll()` left kicks
        off). Returns True if chains arrived meanwhile: pop them now, since no kick
        will come for those. False on a ring without addresses or broken by the guest
        (check `active` first to tell "nothing new" from "not running")."""
        return bool(self._queue.enable_notification())

    def disable_notification(self) -> None:
        """Tell the driver it need not kick (a hint: a kick may still come); `poll()`
        and `batches()` do this themselves."""
        self._queue.disable_notification()

    def _pop(self, limit: int = 0) -> ChainBatch | None:
        """Pop up to `limit` chains; None if the guest broke the ring (reported once:
        the queue yields nothing more until it is reset)."""
        try:
            if self._resubmit:
                heads, self._resubmit = self._resubmit, []
                log.info("queue %d: resubmitting %d inflight requests", self._index, len(heads))
                return self._queue.pop_heads(heads)
            batch = self._queue.pop(limit)
        except QueueError as exc:
            log.error("queue %d: %s; the ring is stopped until reset", self._index, exc)
            self.report_error()
            return None
        if self._inflight is not None and len(batch):
            self._inflight.popped([chain.head for chain in batch])
        return batch

    # -- returning buffers -----------------------------------------------------------

    def complete(self, batch: ChainBatch, lengths: Sequence[int], *, notify: bool = True) -> None:
        """Return the first len(lengths) chains of `batch` (lengths[i] bytes written
        into chain i), then interrupt the guest if it asked for it. `notify=False`
        leaves the interrupt to a later `signal_used()`: a device that completes on
        two rings at once interrupts once both are ready, so the guest's first
        wake-up finds everything (and does not preempt the rest of the work)."""
        inflight = self._inflight
        if inflight is None:
            self._queue.add_used_batch(batch, lengths)
        else:
            heads = [batch[i].head for i in range(len(lengths))]
            inflight.completing(heads)
            self._queue.add_used_batch(batch, lengths)
            inflight.completed(heads, self._queue.next_used)
        if notify:
            self.signal_used()

    def complete_one(self, head: int, length: int, *, notify: bool = True) -> None:
        """Return one chain by its head (a chain held across wake-ups); `notify=False`
        leaves the interrupt to a later `signal_used()`, as `complete` does."""
        inflight = self._inflight
        if inflight is None:
            self._queue.add_used(head, length)
        else:
            inflight.completing((head,))
            self._queue.add_used(head, length)
            inflight.completed((head,), self._queue.next_used)
        if notify:
            self.signal_used()

    def signal(self) -> None:
        """Interrupt the guest unconditionally (config change, errors)."""
        if self._call_fd is not None:
            os.eventfd_write(self._call_fd, 1)

    def signal_used(self) -> None:
        """Interrupt the guest if the entries added since last time warrant it."""
        if self._call_fd is not None and self._queue.needs_notification():
            os.eventfd_write(self._call_fd, 1)

    def report_error(self) -> None:
        """Tell the VMM this ring failed (its err eventfd), if it gave one."""
        if self._err_fd is not None:
            os.eventfd_write(self._err_fd, 1)

    # -- the session's side (framework only) -----------------------------------------

    def _set_kick_fd(self, fd: int) -> None:
        """SET_VRING_KICK: the new kick fd (the old one closed) starts the ring."""
        if self._kick_fd is not None:
            os.close(self._kick_fd)
        self._kick_fd = fd
        self._started = True

    def _set_call_fd(self, fd: int | None) -> None:
        if self._call_fd is not None:
            os.close(self._call_fd)
        self._call_fd = fd

    def _set_err_fd(self, fd: int | None) -> None:
        if self._err_fd is not None:
            os.close(self._err_fd)
        self._err_fd = fd

    def _track_inflight(self, inflight: QueueInflight | None) -> None:
        """SET_VRING_KICK with an inflight region: pick up where a crashed backend
        left off. Every chain popped before is either on the used ring or still
        inflight, so the avail ring resumes after both, and the inflight ones are
        taken again first, oldest first."""
        self._inflight = inflight
        self._resubmit = []
        if inflight is None or not self._queue.configured:
            return
        used = self._queue.next_used
        self._resubmit = inflight.recover(used, self._queue.size)
        if inflight.settled:
            log.info(
                "queue %d: %d inflight requests had completed before the restart",
                self._index,
                inflight.settled,
            )
        self._queue.next_avail = (used + len(self._resubmit)) & 0xFFFF

    def _set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled

    def _set_stopped(self) -> None:
        """GET_VRING_BASE / reset: no longer started (the session then unwatches the
        kick fd and calls `_close_fds`)."""
        self._started = False

    def _close_fds(self) -> None:
        for fd in (self._kick_fd, self._call_fd, self._err_fd):
            if fd is not None:
                os.close(fd)
        self._kick_fd = self._call_fd = self._err_fd = None
