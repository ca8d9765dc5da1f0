"""What the fuzz targets share: the error-tree rule, a worker the target steps by hand,
and a rig that puts a device's rings in real memfd guest memory.

Every target keeps to the invariants of issue 19:
- no exception escapes except the package's own error tree (`VhostUserError` and its
  subclasses; device error trees are rooted in it): anything else is a crash;
- no access outside guest regions: ASan (the sanitizer build) catches heap overruns in
  the Cython code, and targets that read or write guest memory compare what the device
  touched with the ranges the guest gave it;
- no hang: libFuzzer's per-input `-timeout` (fuzz/run.py sets one);
- state stays consistent after an error: after the fuzzed input the target sends a good
  request and checks that it is served correctly.
"""

from __future__ import annotations

import heapq
import os
import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vhost_user_core.errors import VhostUserError
from vhost_user_core.frontend import FrontendQueue, GuestRam
from vhost_user_core.memory import GuestMemory
from vhost_user_core.vring import Vring
from vhost_user_core.worker import Worker


class InvariantError(AssertionError):
    """An invariant of a fuzz target does not hold (a finding, like a crash)."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise InvariantError(message)


@contextmanager
def error_tree() -> Iterator[None]:
    """Let the package's own errors through as expected outcomes; anything else
    propagates and libFuzzer reports it as a crash."""
    try:
        yield
    except VhostUserError:
        pass


class SteppedWorker(Worker):
    """The real Worker's registries and dispatch, without its thread: the target runs
    ready callbacks, queued calls and timers itself, so every input is handled to the
    end before the next, and a callback's exception reaches the fuzzer instead of the
    worker's log (the daemon swallows it to survive; a fuzzer must see it)."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._stopping = True
        self._epoll.close()
        os.close(self._wake)

    def _dispatch(
        self,
        callback: Callable[[], None],
        fd: int | None,
        registry: dict[int, Callable[[], None]] | None = None,
    ) -> None:
        if fd is not None and registry is not None and registry.get(fd) is not callback:
            return
        callback()

    def step(self, timers: int = 4) -> None:
        """Run what is ready now, then up to `timers` armed timers early (time is not
        what a fuzzer explores; the order of events is)."""
        for fd, mask in self._epoll.poll(0):
            if fd == self._wake:
                try:
                    os.eventfd_read(self._wake)
                except BlockingIOError:
                    pass
                continue
            if mask & ~select.EPOLLOUT and fd in self._readers:
                self._dispatch(self._readers[fd], fd, self._readers)
            if mask & ~select.EPOLLIN and fd in self._writers:
                self._dispatch(self._writers[fd], fd, self._writers)
        while self._soon:
            self._dispatch(self._soon.popleft(), None)
        for _ in range(timers):
            if self._timeout() < 0:
                break
            _, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._dispatch(handle.callback, None)
            while self._soon:
                self._dispatch(self._soon.popleft(), None)

    @property
    def timers_armed(self) -> int:
        return sum(1 for _, _, h in self._timers if not h.cancelled)


class Rig:
    """A device's rings in real shared memory: the driver side (FrontendQueue over a
    memfd GuestRam) and the device side (Vrings over its own mapping of the same fd),
    with a SteppedWorker; what a Session would set up, minus the socket."""

    def __init__(
        self, sizes: list[int], *, memory: int = 1 << 20, scratch: int = 512 << 10
    ) -> None:
        self.ram = GuestRam(memory, name="fuzz-rig")
        self.device_memory = GuestMemory()
        self.device_memory.add_region(0, memory, 0, 0, self.ram.fd)
        self.worker = SteppedWorker("fuzz-worker", _NoLock())
        self.queues = [
            FrontendQueue(self.ram, i, size, event_idx=False) for i, size in enumerate(sizes)
        ]
        self.vrings = []
        for queue in self.queues:
            vring = Vring(queue.index, queue.size, self.worker)
            vring.queue.set_size(queue.size)
            vring.queue.set_addresses(self.device_memory, queue.desc, queue.avail, queue.used)
            # The rig plays the session's part, so it uses the session's setters.
            vring._set_call_fd(os.dup(queue.call_fd))
            vring._set_kick_fd(os.dup(queue.kick_fd))  # started
            vring._set_enabled(True)
            self.vrings.append(vring)
        #: Per queue: head -> the (gpa, length) writable buffers of the chain posted there.
        self.writable: list[dict[int, list[tuple[int, int]]]] = [{} for _ in sizes]
        self.scratch = self.ram.alloc(scratch, 64)
        self.scratch_size = scratch
        self._next = 0

    def reset_scratch(self) -> None:
        self._next = 0

    def alloc(self, size: int) -> int | None:
        """GPA of `size` bytes of scratch memory, or None once the input used it up."""
        start = (self._next + 15) & ~15
        if start + size > self.scratch_size:
            return None
        self._next = start + size
        return self.scratch + start

    def post(self, queue: int, readable: list[bytes], writable: list[int]) -> int | None:
        """Post one chain: readable buffers with these bytes, then writable buffers of
        these sizes (zeroed). None if there is no room (descriptors or scratch)."""
        driver = self.queues[queue].driver
        if driver.free_descriptors < len(readable) + len(writable):
            return None
        buffers = []
        for data in readable:
            gpa = self.alloc(len(data))
            if gpa is None:
                return None
            self.ram.memory.write(gpa, data)
            buffers.append((gpa, len(data), False))
        for size in writable:
            gpa = self.alloc(size)
            if gpa is None:
                return None
            self.ram.memory.write(gpa, bytes(size))
            buffers.append((gpa, size, True))
        if not buffers:
            return None
        head = int(driver.add(buffers))
        self.writable[queue][head] = [(g, n) for g, n, w in buffers if w]
        return head

    def post_raw(self, queue: int, buffers: list[tuple[int, int, bool]]) -> int | None:
        """Post (gpa, length, writable) buffers as given: outside memory, say."""
        if self.queues[queue].driver.free_descriptors < len(buffers) or not buffers:
            return None
        head = int(self.queues[queue].driver.add(buffers))
        self.writable[queue][head] = []
        return head

    def written(self, queue: int, head: int, length: int) -> bytes:
        """The first `length` bytes of chain `head`'s writable buffers."""
        out = b""
        for gpa, n in self.writable[queue][head]:
            take = min(n, length - len(out))
            out += self.ram.memory.read(gpa, take)
        return out

    def publish(self, queue: int) -> None:
        self.queues[queue].driver.publish()

    def used(self, queue: int) -> list[tuple[int, int]]:
        return list(self.queues[queue].driver.get_used())

    def close(self) -> None:
        self.worker.stop()
        for vring in self.vrings:
            vring._close_fds()
        for queue in self.queues:
            queue.close()
        self.device_memory.close()
        self.ram.close()


class _NoLock:
    """The session lock, for a worker whose callbacks run on the caller's thread."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (sorted, clipped; empty pieces dropped)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]
