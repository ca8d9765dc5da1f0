# Serving a queue without Python: what a worker's C loop calls on a kick, for cimport by
# a device's own Cython (subclass QueueFastPath and override serve).
from libc.stdint cimport uint16_t, uint64_t
from posix.uio cimport iovec

from .virtqueue cimport ChainBatch, Virtqueue

cdef class QueueFastPath:
    # 0: the kick is fully served; 1: call the device's handle_queue (Python) as well.
    cdef int serve(self, object vring, Virtqueue queue) except -1

cdef class FillFromFd(QueueFastPath):
    cdef int fd
    cdef readonly uint64_t bytes_filled
    cdef public bint enabled
    cdef ChainBatch _batch
    cdef uint16_t _cap
    cdef ChainBatch _fresh_batch(self, uint16_t n)
    cdef int _readv(self, iovec* iov, int count, uint64_t* got) noexcept

cdef class Kick:
    cdef readonly int fd
    cdef object vring
    cdef object process
    cdef readonly QueueFastPath fast
    cdef int fire(self) except -1
    cdef int run(self) except -1
