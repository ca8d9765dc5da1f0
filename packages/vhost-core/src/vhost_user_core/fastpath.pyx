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
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from posix.uio cimport iovec, readv

from .memory cimport Segment
from .ring cimport vq_store_release16, vring_used_elem
from .virtqueue cimport ChainBatch, ChainInfo, Virtqueue

cdef enum:
    IOV_CHUNK = 1024  # Linux's IOV_MAX


# The inflight region's layout (inflight.py): a 16-byte header, then per descriptor
# head 16 bytes (inflight u8, 5 pad, next u16, counter u64), little-endian.
cdef enum:
    LAST_BATCH_AT = 12
    USED_IDX_AT = 14
    HEADER_SIZE = 16
    ENTRY_SIZE = 16
    ENTRY_NEXT_AT = 6
    ENTRY_COUNTER_AT = 8


cdef inline void put16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = v >> 8


cdef inline uint16_t get16(const uint8_t* p) noexcept nogil:
    return p[0] | (p[1] << 8)


cdef class InflightLog:
    """`inflight.QueueInflight`'s bookkeeping (popped, completing, completed) in C over
    the same region, for a fast path that pops and completes chains without Python.
    The pop counter is the Python object's: `resume` takes it before a fast path pops,
    `flush` gives it back after, so chains popped by either path keep their order."""

    def __init__(self, source):
        # A raw pointer, no buffer export held (the region's close releases its views):
        # `Kick.run` checks before every use that the ring still has this `source`,
        # and the region is replaced or closed only under the session lock.
        cdef uint8_t[::1] view = source._buf
        self.source = source
        self.base = &view[0]
        self.desc_num = source.desc_num
        self.counter = source.counter

    cdef int resume(self) except -1:
        self.counter = self.source.counter
        return 0

    cdef int flush(self) except -1:
        self.source.counter = self.counter
        return 0

    cdef void popped(self, uint16_t head) noexcept nogil:
        cdef uint8_t* e
        cdef uint64_t c = self.counter
        cdef int i
        if head >= self.desc_num:
            return
        e = self.base + HEADER_SIZE + ENTRY_SIZE * head
        e[0] = 1
        for i in range(1, ENTRY_COUNTER_AT):
            e[i] = 0
        for i in range(8):
            e[ENTRY_COUNTER_AT + i] = (c >> (8 * i)) & 0xFF
        self.counter = c + 1

    cdef void unpopped(self, uint16_t head) noexcept nogil:
        """A chain popped and then left on the avail ring after all."""
        if head < self.desc_num:
            self.base[HEADER_SIZE + ENTRY_SIZE * head] = 0


cdef int complete_batch(Virtqueue q, const vring_used_elem* elems, uint16_t n,
                        InflightLog log) noexcept:
    """Vring.complete in C: the batch chained from last_batch_head before the used index
    moves (once, for all n), the records cleared after, as `QueueInflight` does."""
    cdef uint16_t i, head, last
    cdef uint8_t* base = NULL
    if q.desc == NULL or q._broken:
        return -1
    for i in range(n):
        if elems[i].id >= q._size:
            return -1
    if n == 0:
        return 0
    if log is not None:
        base = log.base
        last = get16(base + LAST_BATCH_AT)
        for i in range(n):
            head = <uint16_t>elems[i].id
            if head < log.desc_num:
                put16(base + HEADER_SIZE + ENTRY_SIZE * head + ENTRY_NEXT_AT, last)
                last = head
        put16(base + LAST_BATCH_AT, last)
    for i in range(n):
        memcpy(&q.used_ring[<uint16_t>(q.next_used + i) % q._size], &elems[i],
               sizeof(vring_used_elem))
    q.next_used = <uint16_t>(q.next_used + n)
    vq_store_release16(&q.used[1], q.next_used)
    if base != NULL:
        for i in range(n):
            head = <uint16_t>elems[i].id
            if head < log.desc_num:
                base[HEADER_SIZE + ENTRY_SIZE * head] = 0
        put16(base + USED_IDX_AT, q.next_used)
    return 0


cdef class QueueFastPath:
    """Base of a device's C fast path; `Vring`'s owner (the session) calls `serve`
    with the session lock held, at a kick. A subclass that keeps the ring's inflight
    records (through the `InflightLog` it is given) sets `keeps_inflight`; any other
    is not used on a ring that has them."""

    cdef int serve(self, object vring, Virtqueue queue, InflightLog log) except -1:
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

    cdef int serve(self, object vring, Virtqueue q, InflightLog log) except -1:
        cdef uint16_t n, i
        cdef int count
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
            count = avail_count(q)
            if count < 0:
                return 1  # broken by the guest: the Python path reports it
            if count == 0:
                return 0
            n = <uint16_t>count
            batch = self._batch = reuse_batch(self._batch, n, &self._cap)
            if walk_avail(q, batch, n) < 0:
                raise MemoryError()
            for i in range(n):
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
        self._log = None

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
        cdef object records
        cdef InflightLog log = None
        # Heads a restarted backend resubmits are the Python path's (`Vring._pop`).
        if (
            self.fast is not None
            and vring._started
            and vring._enabled
            and not vring._resubmit
        ):
            records = vring._inflight
            if records is not None:
                if not self.fast.keeps_inflight:
                    self.process(vring)
                    return 0
                log = self._log
                if log is None or log.source is not records:
                    log = self._log = InflightLog(records)
            if self.fast.serve(vring, vring._queue, log) == 0:
                return 0
        self.process(vring)
        return 0
