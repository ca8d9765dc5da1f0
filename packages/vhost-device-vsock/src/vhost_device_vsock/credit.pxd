# Credit's C-level interface, for the data path's cimport (`_datapath.pyx`): the same
# counters and rules the Python API (credit.pyi) has, without a Python call.
from libc.stdint cimport uint32_t, int64_t

cdef class Credit:
    cdef public uint32_t buf_alloc
    cdef public uint32_t fwd_cnt
    cdef public uint32_t advertised_fwd_cnt
    cdef public uint32_t peer_buf_alloc
    cdef public uint32_t peer_fwd_cnt
    cdef public uint32_t tx_cnt

    cpdef void forwarded(self, uint32_t nbytes) noexcept
    cpdef tuple advertised(self)
    cdef void advertise(self, uint32_t* buf_alloc, uint32_t* fwd_cnt) noexcept nogil
    cpdef int64_t guest_may_send(self, int64_t held) noexcept
    cpdef bint update_due(self, int64_t held) noexcept
    cpdef bint within_window(self, int64_t held) noexcept
    cpdef void peer_update(self, uint32_t buf_alloc, uint32_t fwd_cnt) noexcept
    cpdef uint32_t peer_free(self) noexcept
    cpdef void sent(self, uint32_t nbytes) noexcept
