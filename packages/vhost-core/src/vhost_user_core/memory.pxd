from libc.stdint cimport uint8_t, uint64_t

cdef struct Region:
    uint64_t gpa
    uint64_t size
    uint64_t uaddr
    uint64_t mmap_offset
    uint8_t* host

cdef struct Segment:
    uint8_t* ptr
    uint64_t len

cdef class Mapping:
    cdef void* base
    cdef size_t length

cdef object pinned_view(object owner, uint8_t* ptr, uint64_t length, bint readonly=*)

cdef class GuestMemory:
    cdef Region* _regions
    cdef int count
    cdef bint closed
    cdef list _mappings
    cdef readonly tuple pins
    cdef int find(self, uint64_t gpa) noexcept nogil
    cdef uint8_t* translate(self, uint64_t gpa, uint64_t length) noexcept nogil
    cdef int segments(self, uint64_t gpa, uint64_t length, Segment* out,
                      int max_out) noexcept nogil
    cdef uint8_t* checked(self, uint64_t gpa, uint64_t length) except NULL
    cdef void _unmap_all(self) noexcept
    cdef void _copy(self, uint64_t gpa, unsigned char[::1] dst) except *
    cdef void _copy_in(self, uint64_t gpa, const unsigned char[::1] src) except *
