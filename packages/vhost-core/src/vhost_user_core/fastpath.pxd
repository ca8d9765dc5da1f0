# Serving a queue without Python: what a worker's C loop calls on a kick, for cimport by
# a device's own Cython (subclass QueueFastPath and override serve).
from libc.stdint cimport uint8_t, uint16_t, uint64_t
from libc.stdlib cimport malloc
from posix.uio cimport iovec
from posix.unistd cimport write

from .ring cimport (
    USED_F_NO_NOTIFY, vq_full_fence, vq_load16, vq_load_acquire16, vq_store16,
    vring_used_elem,
)
from .virtqueue cimport ChainBatch, ChainInfo, Virtqueue


cdef inline void signal_fd(object fd) noexcept:
    """Interrupt the guest through a ring's call eventfd (None: no call fd set)."""
    cdef uint64_t one = 1
    if fd is not None:
        write(<int>fd, &one, 8)


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


cdef inline uint16_t avail_head(Virtqueue q, uint16_t i) noexcept nogil:
    """The head of the i-th chain past next_avail (unchecked)."""
    return vq_load16(&q.avail[2 + <uint16_t>(q.next_avail + i) % q._size])


cdef inline int avail_count(Virtqueue q) noexcept nogil:
    """How many chains a fast path may take, kicks off while it looks: n > 0 (every
    head in range), 0 (none, kicks back on and nothing came meanwhile), or -1 (a ring
    the guest broke: the Python path reports it)."""
    cdef uint16_t n, i
    while True:
        disable_kicks(q)
        n = <uint16_t>(vq_load_acquire16(&q.avail[1]) - q.next_avail)
        if n > q._size:
            return -1
        if n == 0:
            if enable_kicks(q):
                continue
            return 0
        for i in range(n):
            if avail_head(q, i) >= q._size:
                return -1
        return n


cdef inline ChainBatch reuse_batch(ChainBatch batch, uint16_t n, uint16_t* cap):
    """An empty batch with room for n chains: `batch` again if it has it (`cap` is its
    room, updated here), so a fast path allocates nothing per kick."""
    if batch is None or n > cap[0]:
        batch = ChainBatch.__new__(ChainBatch)
        batch.chains = <ChainInfo*>malloc(n * sizeof(ChainInfo))
        if batch.chains == NULL:
            raise MemoryError()
        cap[0] = n
    batch.count = 0
    batch.seg_count = 0
    return batch


cdef inline int walk_avail(Virtqueue q, ChainBatch batch, uint16_t n) noexcept nogil:
    """Walk the n chains avail_count found into `batch`; -1 when out of memory."""
    cdef uint16_t i
    for i in range(n):
        if q._walk(batch, avail_head(q, i)) < 0:
            return -1
    return 0


cdef class InflightLog:
    # One queue's inflight records (the core's `inflight.QueueInflight`) kept in C, for a
    # fast path that pops and completes chains itself.
    cdef readonly object source
    cdef uint8_t* base
    cdef uint16_t desc_num
    cdef uint64_t counter
    cdef int resume(self) except -1
    cdef int flush(self) except -1
    cdef void popped(self, uint16_t head) noexcept nogil
    cdef void unpopped(self, uint16_t head) noexcept nogil


# Return n chains at once (one used-index store), keeping `log`'s records if given:
# Vring.complete in C. -1 (nothing returned) on a ring not configured or broken.
cdef int complete_batch(Virtqueue q, const vring_used_elem* elems, uint16_t n,
                        InflightLog log) noexcept

cdef class QueueFastPath:
    # Set by a fast path that keeps a ring's inflight records (its serve gets an
    # InflightLog): only such a one serves a ring with INFLIGHT_SHMFD.
    cdef readonly bint keeps_inflight
    # 0: the kick is fully served; 1: call the device's handle_queue (Python) as well.
    # `log` is None on a ring without inflight records.
    cdef int serve(self, object vring, Virtqueue queue, InflightLog log) except -1

cdef class FillFromFd(QueueFastPath):
    cdef int fd
    cdef readonly uint64_t bytes_filled
    cdef public bint enabled
    cdef ChainBatch _batch
    cdef uint16_t _cap
    cdef int _readv(self, iovec* iov, int count, uint64_t* got) noexcept

cdef class Kick:
    cdef readonly int fd
    cdef object vring
    cdef object process
    cdef readonly QueueFastPath fast
    cdef InflightLog _log
    cdef int fire(self) except -1
    cdef int run(self) except -1
