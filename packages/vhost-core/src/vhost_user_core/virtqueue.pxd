# The split virtqueue's C-level interface, for Cython code in device packages that
# completes buffers on a hot path without a Python call per buffer (a sound stream
# returns its played periods this way). The Python API is the .pyi's; what is declared
# here is for cimport only.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from .memory cimport GuestMemory, Segment
from .ring cimport vring_desc, vring_used_elem

cdef struct ChainInfo:
    uint16_t head
    int error             # 0: usable; else why the chain was rejected (no buffers then)
    uint32_t first_seg    # its segments in the batch: n_read readable, then n_write
    uint32_t n_read
    uint32_t n_write
    uint64_t read_len
    uint64_t write_len

cdef class ChainBatch:
    cdef object pins              # keeps the mappings `segs` point into alive
    cdef ChainInfo* chains
    cdef Segment* segs
    cdef int count
    cdef uint32_t seg_count, seg_cap

    cdef int _reserve(self, uint32_t extra) noexcept nogil
    cdef void _scatter(self, const unsigned char* src, uint64_t* want, int n) noexcept nogil

cdef class DescriptorChain:
    cdef ChainBatch batch
    cdef ChainInfo* info

# Gather readable bytes of a chain in C (a device's hot path parses its header this way).
cdef uint64_t chain_read(ChainBatch batch, ChainInfo* info, uint64_t offset, uint8_t* dst,
                         uint64_t n) noexcept nogil

cdef class Virtqueue:
    cdef readonly int index
    cdef readonly uint16_t max_size
    cdef uint16_t _size
    cdef GuestMemory memory
    cdef object pins           # keeps the ring areas mapped (GuestMemory.pins)
    cdef uint64_t desc_gpa, avail_gpa, used_gpa
    cdef vring_desc* desc
    cdef uint16_t* avail       # flags, idx, ring[size], used_event
    cdef uint16_t* used        # flags, idx, then elems; avail_event after them
    cdef vring_used_elem* used_ring
    cdef public uint16_t next_avail
    cdef public uint16_t next_used
    cdef public bint event_idx
    cdef uint16_t signalled_used
    cdef bint _broken

    cdef _map(self, GuestMemory memory)
    cdef uint16_t _pending(self) except? 0xFFFF
    cdef int _walk(self, ChainBatch batch, uint16_t head) noexcept nogil
    # What add_used and needs_notification do, callable without Python objects: for a
    # device's Cython hot path.
    cdef int push_used(self, uint16_t head, uint32_t length) noexcept nogil
    cdef bint notify_due(self) noexcept nogil
