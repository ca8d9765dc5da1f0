"""Worker threads: one epoll loop each, for kick eventfds, device fds and timers.

A worker sleeps in epoll until something happens (an idle daemon uses no CPU); timers
only shorten that wait while one is armed. Callbacks run with the session lock held, so
the control thread never changes rings or memory under a running handler. The loop
itself is C (`_loop.run`); this class holds its registries, timers and queued calls.
Another thread with work for this worker's device can run it at once under that lock
(`call_now`) instead of waking the worker up: two thread wake-ups and a GIL hand-over
less.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from . import _loop
from .fastpath import Kick

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class Lock(Protocol):
    """What a worker needs of its session's lock (threading.Lock or RLock, or a device's
    own, see `VhostUserBackend.session_lock`)."""

    def acquire(self, blocking: bool = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> object: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> object: ...


class TimerHandle:
    """What `Worker.call_later` returns; `cancel()` before it fires to drop it."""

    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: float, callback: Callback) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Worker:
    """An epoll loop on its own thread."""

    def __init__(self, name: str, lock: Lock) -> None:
        self.name = name
        self._lock = lock
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._hangups: dict[int, Callback] = {}
        self._watched: set[int] = set()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._soon: deque[Callback] = deque()
        self._at_exit: list[Callback] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait for it (not from the worker's own thread)."""
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        with self._lock:
            pass  # a `call_now` that began before `_stopping` was set has ended
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        self._epoll.close()
        os.close(self._wake)

    def at_exit(self, callback: Callback) -> None:
        """Run `callback` on this worker's thread when its loop ends (`stop()` returns
        after it): for state bound to the thread, such as a GL context that only the
        thread that made it current can release. The session is closing then, so it
        runs without the lock."""
        self._at_exit.append(callback)

    def add_reader(self, fd: int, callback: Callback) -> None:
        """Call `callback` whenever `fd` is readable (level-triggered)."""
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        """Call `callback` whenever `fd` is writable (level-triggered): for a device
        that holds data a slow peer has not taken yet."""
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def add_hangup(self, fd: int, callback: Callback) -> None:
        """Call `callback` when `fd` hangs up or fails (EPOLLHUP, EPOLLERR), even while
        nothing is read or written on it: a peer that closes an idle connection. Level-
        triggered: the callback must remove the watch (or close the fd)."""
        self._hangups[fd] = callback
        if fd not in self._watched:  # in the set already: a hang-up adds no bit to its mask
            self._update(fd)

    def remove_hangup(self, fd: int) -> None:
        if self._hangups.pop(fd, None) is not None:
            self._update(fd)

    def unwatch(self, fd: int) -> None:
        """Remove every watch on `fd` (reader, writer, hang-up) in one change of the
        epoll set: for an fd about to be closed."""
        found = self._readers.pop(fd, None) is not None
        found = self._writers.pop(fd, None) is not None or found
        found = self._hangups.pop(fd, None) is not None or found
        if found:
            self._update(fd)

    def _update(self, fd: int) -> None:
        """Make the epoll set's interest in `fd` match the callbacks registered (a
        hang-up watch alone is an empty mask: epoll reports HUP and ERR regardless)."""
        reader = self._readers.get(fd)
        mask = (select.EPOLLIN if reader is not None else 0) | (
            select.EPOLLOUT if fd in self._writers else 0
        )
        wanted = bool(mask) or fd in self._hangups
        if type(reader) is Kick:
            # Edge-triggered: every write to an eventfd is an edge, so a kick needs no
            # read to clear it (one syscall less per wake-up; its count just grows).
            mask |= select.EPOLLET
        watched = fd in self._watched
        if self._epoll.closed:
            # Stopped: a backend's close still unwatches its fds, and there is no set
            # left to change (a modify would raise ValueError, not an OSError).
            self._watched.discard(fd)
            return
        if wanted and watched:
            try:
                self._epoll.modify(fd, mask)
            except FileNotFoundError:
                # The fd was closed (leaving the set) and its number reused.
                self._epoll.register(fd, mask)
        elif wanted:
            self._epoll.register(fd, mask)
            self._watched.add(fd)
        elif watched:
            self._watched.discard(fd)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # already closed: the kernel dropped it from the set

    def call_soon(self, callback: Callback) -> None:
        """Run `callback` on this worker's thread (thread-safe)."""
        self._soon.append(callback)
        self._wake_up()

    def call_now(self, callback: Callback) -> None:
        """Run `callback` at once on the calling thread, under this worker's lock, if
        nobody holds it; otherwise as `call_soon` (the holder is this worker, which
        runs it before it next sleeps, or the control thread, after which it does).
        For another worker with work for this one's device (a sibling VM's packet)
        that should not wait for this one to wake up. Never blocks, so two workers
        calling each other cannot deadlock."""
        if not self._lock.acquire(blocking=False):
            self.call_soon(callback)
            return
        try:
            if self._stopping:
                return
            try:
                callback()
            except Exception:
                log.exception("%s: handler failed", self.name)
        finally:
            self._lock.release()

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        """Run `callback` on this worker after `delay` seconds (thread-safe)."""
        handle = TimerHandle(time.monotonic() + max(delay, 0.0), callback)
        heapq.heappush(self._timers, (handle.deadline, next(self._seq), handle))
        self._wake_up()
        return handle

    def _wake_up(self) -> None:
        """Make the loop look at its queues again. From its own thread there is no need
        (it does before it next sleeps), and skipping it saves a wake-up per timer: a
        sound stream arms one every period."""
        # Once stopping, the wake fd is being closed and its number may be reused:
        # a late call from another thread (a sibling VM's) must not write to it.
        if threading.get_ident() != self._thread.ident and not self._stopping:
            os.eventfd_write(self._wake, 1)

    def _timeout(self) -> float:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return -1
        return max(self._timers[0][0] - time.monotonic(), 0.0)

    def _run(self) -> None:
        # The loop is C (`_loop`): epoll_wait without the GIL and without a Python
        # object per event, kicks fired through their C fast path.
        try:
            _loop.run(self)
        finally:
            for callback in self._at_exit:
                try:
                    callback()
                except Exception:
                    log.exception("%s: exit handler failed", self.name)

    def _run_due(self) -> None:
        while self._soon:
            self._dispatch(self._soon.popleft(), None)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._dispatch(handle.callback, None)

    def _dispatch(
        self, callback: Callback, fd: int | None, registry: dict[int, Callback] | None = None
    ) -> None:
        if self._stopping:
            return
        with self._lock:
            # The control thread, or the other callback of this fd, may have removed it
            # while we waited for the lock.
            if fd is not None and registry is not None and registry.get(fd) is not callback:
                return
            try:
                callback()
            except Exception:
                # A device bug or a hostile guest must not kill the worker thread.
                log.exception("%s: handler failed", self.name)
