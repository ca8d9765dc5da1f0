# cython: language_level=3, cdivision=True
"""Credit-based flow control of one vsock connection (virtio 1.3 §5.10.6.3), no I/O.

Each side tells the other how much it can buffer (buf_alloc) and how many bytes it has
consumed so far (fwd_cnt); a sender keeps (bytes sent - peer's fwd_cnt) within the
peer's buf_alloc. Counters are 32-bit and wrap (C unsigned arithmetic here).

Both directions live here, seen from the device:
- guest -> host: the guest sends within our `buf_alloc`; `forwarded()` counts what the
  host peer took, and `update_due()` says when the guest must hear about it, so a guest
  blocked on credit always gets an update (upstream's hang, #494) without one being
  sent for every packet.
- host -> guest: `peer_free()` is what we may still send; `sent()` counts it.

Cython so that the C data path (`_datapath`) keeps the books per packet without a
Python call; Python code uses the same methods.
"""

from libc.stdint cimport int64_t, uint32_t


cdef class Credit:
    def __init__(self, uint32_t buf_alloc, uint32_t peer_buf_alloc=0,
                 uint32_t peer_fwd_cnt=0):
        self.buf_alloc = buf_alloc
        # Bytes of the guest's we handed to the host peer.
        self.fwd_cnt = 0
        # The fwd_cnt in the last header we sent the guest.
        self.advertised_fwd_cnt = 0
        self.peer_buf_alloc = peer_buf_alloc
        self.peer_fwd_cnt = peer_fwd_cnt
        # Payload bytes we sent the guest.
        self.tx_cnt = 0

    # guest -> host
    cpdef void forwarded(self, uint32_t nbytes) noexcept:
        self.fwd_cnt += nbytes

    cpdef tuple advertised(self):
        """(buf_alloc, fwd_cnt) for a header about to be sent; records what the guest
        will know."""
        self.advertised_fwd_cnt = self.fwd_cnt
        return self.buf_alloc, self.fwd_cnt

    cdef void advertise(self, uint32_t* buf_alloc, uint32_t* fwd_cnt) noexcept nogil:
        """`advertised` for C callers."""
        self.advertised_fwd_cnt = self.fwd_cnt
        buf_alloc[0] = self.buf_alloc
        fwd_cnt[0] = self.fwd_cnt

    cpdef int64_t guest_may_send(self, int64_t held) noexcept:
        """How much the guest believes it may still send, with `held` bytes of its
        still waiting for the host peer."""
        cdef uint32_t unadvertised = self.fwd_cnt - self.advertised_fwd_cnt
        return <int64_t>self.buf_alloc - held - unadvertised

    cpdef bint update_due(self, int64_t held) noexcept:
        """Whether to send a CREDIT_UPDATE now: the host took bytes the guest has not
        heard of, and the guest believes less than half the buffer is free. A guest
        blocked on credit believes nothing is free, so it is always told."""
        if self.fwd_cnt == self.advertised_fwd_cnt:
            return False
        return self.guest_may_send(held) < <int64_t>(self.buf_alloc // 2)

    cpdef bint within_window(self, int64_t held) noexcept:
        """Whether the guest respected our buf_alloc (it holds no more than it)."""
        return held <= <int64_t>self.buf_alloc

    # host -> guest
    cpdef void peer_update(self, uint32_t buf_alloc, uint32_t fwd_cnt) noexcept:
        self.peer_buf_alloc = buf_alloc
        self.peer_fwd_cnt = fwd_cnt

    cpdef uint32_t peer_free(self) noexcept:
        cdef uint32_t in_flight = self.tx_cnt - self.peer_fwd_cnt
        return self.peer_buf_alloc - in_flight if in_flight < self.peer_buf_alloc else 0

    cpdef void sent(self, uint32_t nbytes) noexcept:
        self.tx_cnt += nbytes
