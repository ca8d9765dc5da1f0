# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A kick served without Python: the worker's C loop (`_loop`) sees the kick eventfd
(edge-triggered: never read, no syscall) and calls a device's `QueueFastPath.serve` through its C vtable; only a fast path that
answers 1 (or none) costs a Python call to the device's `handle_queue`.

`FillFromFd` is the one a device of write-only buffers uses (virtio-rng): every chain's
writable buffers filled straight from a file descriptor with readv, in guest memory,
one batch and one interrupt per wake-up. Anything unusual (a malformed chain, a broken
ring, a short read or an error) is left on the ring for the Python path, which has the
checks, the logging and the error reporting.
"""

from libc.errno cimport EINTR, errno
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc
from posix.uio cimport iovec, readv
from posix.unistd cimport write

from .memory cimport Segment
from .ring cimport (
    USED_F_NO_NOTIFY, vq_full_fence, vq_load16, vq_load_acquire16, vq_store16,
)
from .virtqueue cimport ChainBatch, ChainInfo, Virtqueue

cdef enum:
    IOV_CHUNK = 1024  # Linux's IOV_MAX


cdef inline void disable_kicks(Virtqueue q) noexcept nogil:
    if q.used != NULL and not q.event_idx:
        vq_store16(&q.used[0], vq_load16(&q.used[0]) | USED_F_NO_NOTIFY)


cdef inline bint enable_kicks(Virtqueue q) noexcept nogil:
    """Virtqueue.enable_notification: True if chains arrived meanwhile."""
    if q.event_idx:
        vq_store16(<uint16_t*>&q.used_ring[q._size], q.next_avail)
    else:
        vq_store16(&q.used[0], vq_load16(&q.used[0]) & ~USED_F_NO_NOTIFY)
    vq_full_fence()
    return vq_load_acquire16(&q.avail[1]) != q.next_avail


cdef inline void signal_fd(object fd) noexcept:
    cdef uint64_t one = 1
    if fd is not None:
        write(<int>fd, &one, 8)


cdef class QueueFastPath:
    """Base of a device's C fast path; `Vring`'s owner (the session) calls `serve`
    with the session lock held, at a kick."""

    cdef int serve(self, object vring, Virtqueue queue) except -1:
        return 1


cdef class FillFromFd(QueueFastPath):
    """Fill every writable buffer the guest posts from `fd` (not owned: the device
    closes it). `enabled` off (or a read that returns 0, which turns it off) hands
    every kick to the Python path; `bytes_filled` counts what it served."""

    def __init__(self, int fd):
        self.fd = fd
        self.enabled = True
        self.bytes_filled = 0
        self._batch = None
        self._cap = 0

    cdef int serve(self, object vring, Virtqueue q) except -1:
        cdef uint16_t n, i, head, avail_idx
        cdef ChainBatch batch
        cdef ChainInfo* info
        cdef iovec iov[IOV_CHUNK]
        cdef int niov
        cdef uint32_t s, end
        cdef Segment* seg
        cdef uint64_t wanted, got, budget, take
        cdef int r = 0
        cdef uint16_t served
        if not self.enabled or q.desc == NULL or q._broken:
            return 1
        while True:
            disable_kicks(q)
            avail_idx = vq_load_acquire16(&q.avail[1])
            n = <uint16_t>(avail_idx - q.next_avail)
            if n > q._size:
                return 1  # broken by the guest: the Python path reports it
            if n == 0:
                if enable_kicks(q):
                    continue
                return 0
            for i in range(n):
                head = vq_load16(&q.avail[2 + <uint16_t>(q.next_avail + i) % q._size])
                if head >= q._size:
                    return 1
            batch = self._fresh_batch(n)
            for i in range(n):
                head = vq_load16(&q.avail[2 + <uint16_t>(q.next_avail + i) % q._size])
                if q._walk(batch, head) < 0:
                    raise MemoryError()
                if batch.chains[i].error:
                    return 1  # the Python path logs it and completes it empty
            # Read straight into the writable buffers, IOV_CHUNK segments at a time.
            wanted = got = 0
            niov = 0
            for i in range(n):
                info = &batch.chains[i]
                wanted += info.write_len
                s = info.first_seg + info.n_read
                end = s + info.n_write
                while s < end:
                    seg = &batch.segs[s]
                    iov[niov].iov_base = seg.ptr
                    iov[niov].iov_len = seg.len
                    niov += 1
                    s += 1
                    if niov == IOV_CHUNK:
                        r = self._readv(iov, niov, &got)
                        niov = 0
                        if r:
                            break
                else:
                    continue
                break
            else:
                r = self._readv(iov, niov, &got) if niov else 0
            if r < 0:
                return 1  # the Python path raises the source's error
            if got == 0 and wanted:
                self.enabled = False  # end of file: the Python path says so, once
                return 1
            # Complete what was filled (the Python path's `_share`); chains that got
            # nothing stay on the ring.
            served = 0
            budget = got
            for i in range(n):
                info = &batch.chains[i]
                if got < wanted and budget == 0:
                    break
                take = info.write_len if info.write_len < budget else budget
                budget -= take
                q.push_used(info.head, <uint32_t>take)
                served += 1
            q.next_avail = <uint16_t>(q.next_avail + served)
            self.bytes_filled += got
            if q.notify_due():
                signal_fd(vring._call_fd)
            if got < wanted:
                return 1  # a short read: the rest is the Python path's

    cdef ChainBatch _fresh_batch(self, uint16_t n):
        """The batch object reused for every wake-up (no allocation per kick)."""
        cdef ChainBatch batch = self._batch
        if batch is None or n > self._cap:
            batch = ChainBatch.__new__(ChainBatch)
            batch.chains = <ChainInfo*>malloc(n * sizeof(ChainInfo))
            if batch.chains == NULL:
                raise MemoryError()
            self._batch = batch
            self._cap = n
        batch.count = 0
        batch.seg_count = 0
        return batch

    cdef int _readv(self, iovec* iov, int count, uint64_t* got) noexcept:
        """One readv of `count` segments, adding to `got`: 0 if they were all filled,
        1 on a short read, -1 on an error."""
        cdef Py_ssize_t r
        cdef uint64_t want = 0
        cdef int i
        for i in range(count):
            want += iov[i].iov_len
        while True:
            with nogil:
                r = readv(self.fd, iov, count)
            if r >= 0 or errno != EINTR:
                break
        if r < 0:
            return -1
        got[0] += r
        return 0 if <uint64_t>r == want else 1


cdef class Kick:
    """A ring's kick fd as its worker sees it: callable (serve the ring), so any
    dispatcher can run it; the C loop calls `fire` without a Python call. Its worker
    watches it edge-triggered, so the eventfd is never read."""

    def __init__(self, int fd, vring, process, QueueFastPath fast=None):
        self.fd = fd
        self.vring = vring
        self.process = process
        self.fast = fast

    def __call__(self):
        self.fire()

    def serve(self):
        """Serve what the ring holds, without a kick (a ring that just started)."""
        self.run()

    cdef int fire(self) except -1:
        # The worker watches a kick edge-triggered (`Worker._update`): an eventfd
        # signals an edge at every write, so the kick is not read (no syscall).
        if self.vring._kick_fd is None:
            return 0
        return self.run()

    cdef int run(self) except -1:
        cdef object vring = self.vring
        if (
            self.fast is not None
            and vring._started
            and vring._enabled
            and self.fast.serve(vring, vring._queue) == 0
        ):
            return 0
        self.process(vring)
        return 0
