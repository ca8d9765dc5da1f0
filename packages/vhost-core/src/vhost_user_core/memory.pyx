# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Guest memory: regions mapped from the VMM's fds, every access bounds-checked.

Regions live in a C array sorted by guest-physical address, so the hot paths
(descriptor walking, copies) translate addresses without the GIL. A range is valid
only if every byte of it lies in mapped memory; it may span regions only where they
are contiguous in guest-physical space.

Each region's mmap is a reference-counted `Mapping`. `pins` is the tuple of the current
ones: whoever keeps host pointers past a memory update (a popped ChainBatch, a ring, a
view) holds `pins`, so a SET_MEM_TABLE or REM_MEM_REG from the VMM never unmaps memory
that a device is still reading or writing; the old mapping goes when its last holder does.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.errno cimport errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, strerror
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.unistd cimport _SC_PAGESIZE, sysconf

from .errors import GuestMemoryError

cdef enum:
    _MAX_REGIONS = 509

MAX_REGIONS = _MAX_REGIONS

cdef inline bint wraps(uint64_t start, uint64_t length) noexcept nogil:
    return length != 0 and start + length - 1 < start


cdef class Mapping:
    """One mmap of a region's fd; unmapped when the last reference goes."""

    def __cinit__(self):
        self.base = NULL
        self.length = 0

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.length)


cdef class _PinnedBuffer:
    """Exports [ptr, ptr+length) through the buffer protocol while holding `owner`
    (the mappings behind the pointer), so a memoryview of it can never dangle."""
    cdef object owner
    cdef uint8_t* ptr
    cdef Py_ssize_t length
    cdef bint readonly

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void*>self.ptr, self.length, self.readonly, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass


cdef object pinned_view(object owner, uint8_t* ptr, uint64_t length, bint readonly=False):
    """A memoryview of host memory that keeps `owner` alive."""
    cdef _PinnedBuffer buf = _PinnedBuffer.__new__(_PinnedBuffer)
    buf.owner = owner
    buf.ptr = ptr
    buf.length = <Py_ssize_t>length
    buf.readonly = readonly
    return memoryview(buf)


cdef class MemoryRegion:
    cdef readonly uint64_t guest_phys_addr, size, userspace_addr, mmap_offset, host_addr

    def __repr__(self):
        return (f"MemoryRegion(gpa={self.guest_phys_addr:#x}, size={self.size:#x}, "
                f"uaddr={self.userspace_addr:#x}, offset={self.mmap_offset:#x})")


cdef class GuestMemory:
    def __cinit__(self):
        self._regions = <Region*>malloc(_MAX_REGIONS * sizeof(Region))
        if self._regions == NULL:
            raise MemoryError()
        self.count = 0
        self.closed = False
        self._mappings = []
        self.pins = ()

    def __dealloc__(self):
        free(self._regions)

    cdef void _unmap_all(self) noexcept:
        self.count = 0
        self._mappings = []
        self.pins = ()

    def close(self):
        """Drop every region; accessors raise GuestMemoryError afterwards. A mapping
        is unmapped once nothing else pins it."""
        self._unmap_all()
        self.closed = True

    def __len__(self):
        return self.count

    def add_region(self, uint64_t guest_phys_addr, uint64_t size, uint64_t userspace_addr,
                   uint64_t mmap_offset, int fd):
        """mmap `fd` at `mmap_offset` for `size` bytes as guest-physical memory."""
        cdef int i, pos
        cdef uint64_t page = <uint64_t>sysconf(_SC_PAGESIZE)
        cdef uint64_t aligned, delta
        cdef void* base
        cdef Mapping mapping
        if self.closed:
            raise GuestMemoryError("guest memory is closed")
        if size == 0:
            raise GuestMemoryError("memory region of size 0")
        if wraps(guest_phys_addr, size) or wraps(userspace_addr, size) or wraps(mmap_offset, size):
            raise GuestMemoryError(
                f"memory region [{guest_phys_addr:#x}, +{size:#x}) wraps the address space")
        if self.count >= _MAX_REGIONS:
            raise GuestMemoryError(f"more than {_MAX_REGIONS} memory regions")
        for i in range(self.count):
            if (guest_phys_addr < self._regions[i].gpa + self._regions[i].size
                    and self._regions[i].gpa < guest_phys_addr + size):
                raise GuestMemoryError(
                    f"memory region at {guest_phys_addr:#x} overlaps the one at "
                    f"{self._regions[i].gpa:#x}")
        aligned = mmap_offset & ~(page - 1)
        delta = mmap_offset - aligned
        if wraps(aligned, size + delta) or size + delta < size:
            raise GuestMemoryError("memory region mapping wraps")
        base = mmap(NULL, size + delta, PROT_READ | PROT_WRITE, MAP_SHARED, fd, aligned)
        if base == MAP_FAILED:
            raise GuestMemoryError(
                f"cannot map memory region at {guest_phys_addr:#x} (size {size:#x}, fd {fd}): "
                f"{strerror(errno).decode()}")
        mapping = Mapping.__new__(Mapping)
        mapping.base = base
        mapping.length = size + delta
        pos = self.count
        while pos > 0 and self._regions[pos - 1].gpa > guest_phys_addr:
            self._regions[pos] = self._regions[pos - 1]
            pos -= 1
        self._regions[pos].gpa = guest_phys_addr
        self._regions[pos].size = size
        self._regions[pos].uaddr = userspace_addr
        self._regions[pos].mmap_offset = mmap_offset
        self._regions[pos].host = <uint8_t*>base + delta
        self.count += 1
        self._mappings.insert(pos, mapping)
        self.pins = tuple(self._mappings)

    def remove_region(self, uint64_t guest_phys_addr, uint64_t size):
        """Drop the region starting at `guest_phys_addr` with `size` bytes (unmapped
        once nothing pins it)."""
        cdef int i, j
        for i in range(self.count):
            if self._regions[i].gpa == guest_phys_addr and self._regions[i].size == size:
                for j in range(i, self.count - 1):
                    self._regions[j] = self._regions[j + 1]
                self.count -= 1
                del self._mappings[i]
                self.pins = tuple(self._mappings)
                return
        raise GuestMemoryError(
            f"no memory region at {guest_phys_addr:#x} with size {size:#x} to remove")

    def regions(self):
        cdef int i
        cdef MemoryRegion r
        out = []
        for i in range(self.count):
            r = MemoryRegion.__new__(MemoryRegion)
            r.guest_phys_addr = self._regions[i].gpa
            r.size = self._regions[i].size
            r.userspace_addr = self._regions[i].uaddr
            r.mmap_offset = self._regions[i].mmap_offset
            r.host_addr = <uint64_t>self._regions[i].host
            out.append(r)
        return out

    # -- C-level lookups (no GIL) ------------------------------------------------------

    cdef int find(self, uint64_t gpa) noexcept nogil:
        """Index of the region holding `gpa`, or -1 (binary search)."""
        cdef int lo = 0, hi = self.count - 1, mid
        while lo <= hi:
            mid = (lo + hi) >> 1
            if gpa < self._regions[mid].gpa:
                hi = mid - 1
            elif gpa - self._regions[mid].gpa >= self._regions[mid].size:
                lo = mid + 1
            else:
                return mid
        return -1

    cdef uint8_t* translate(self, uint64_t gpa, uint64_t length) noexcept nogil:
        """Host pointer for [gpa, gpa+length) if it lies in one region, else NULL."""
        cdef int i
        if wraps(gpa, length):
            return NULL
        i = self.find(gpa)
        if i < 0:
            return NULL
        if length > self._regions[i].size - (gpa - self._regions[i].gpa):
            return NULL
        return self._regions[i].host + (gpa - self._regions[i].gpa)

    cdef int segments(self, uint64_t gpa, uint64_t length, Segment* out,
                      int max_out) noexcept nogil:
        """Split [gpa, gpa+length) into host segments across GPA-contiguous regions.

        Returns the segment count, or -1 if any byte is unmapped or more than
        `max_out` segments would be needed.
        """
        cdef int n = 0, i
        cdef uint64_t avail, take
        if wraps(gpa, length):
            return -1
        while length:
            i = self.find(gpa)
            if i < 0 or n >= max_out:
                return -1
            avail = self._regions[i].size - (gpa - self._regions[i].gpa)
            take = length if length < avail else avail
            out[n].ptr = self._regions[i].host + (gpa - self._regions[i].gpa)
            out[n].len = take
            n += 1
            gpa += take
            length -= take
        return n

    cdef uint8_t* checked(self, uint64_t gpa, uint64_t length) except NULL:
        cdef uint8_t* p
        if self.closed:
            raise GuestMemoryError("guest memory is closed")
        p = self.translate(gpa, length if length else 1)
        if p == NULL:
            raise GuestMemoryError(
                f"guest range [{gpa:#x}, +{length:#x}) is not inside one mapped region")
        return p

    # -- Python accessors --------------------------------------------------------------

    def vmm_to_guest(self, uint64_t userspace_addr, uint64_t length):
        """Translate a VMM virtual address (SET_VRING_ADDR) to a GPA, range-checked."""
        cdef int i
        cdef uint64_t off
        cdef Region* r
        if not wraps(userspace_addr, length):
            for i in range(self.count):
                r = &self._regions[i]
                if userspace_addr >= r.uaddr:
                    off = userspace_addr - r.uaddr
                    if off < r.size and length <= r.size - off:
                        return r.gpa + off
        raise GuestMemoryError(
            f"VMM address range [{userspace_addr:#x}, +{length:#x}) is not in any region")

    def check_range(self, uint64_t gpa, uint64_t length):
        cdef Segment segs[64]
        if self.closed:
            return False
        return length == 0 and self.find(gpa) >= 0 or self.segments(gpa, length, segs, 64) > 0

    def read(self, uint64_t gpa, uint64_t length):
        cdef bytearray out = bytearray(length)
        if length:
            self._copy(gpa, out)
        return bytes(out)

    def readinto(self, uint64_t gpa, buffer):
        cdef unsigned char[::1] view = buffer
        if view.shape[0]:
            self._copy(gpa, view)

    def write(self, uint64_t gpa, data):
        cdef const unsigned char[::1] view = data
        if view.shape[0]:
            self._copy_in(gpa, view)

    cdef void _copy(self, uint64_t gpa, unsigned char[::1] dst) except *:
        cdef Segment segs[64]
        cdef int n, i
        cdef uint64_t done = 0
        if self.closed:
            raise GuestMemoryError("guest memory is closed")
        n = self.segments(gpa, dst.shape[0], segs, 64)
        if n < 0:
            raise GuestMemoryError(f"guest range [{gpa:#x}, +{dst.shape[0]:#x}) is not mapped")
        with nogil:
            for i in range(n):
                memcpy(&dst[done], segs[i].ptr, segs[i].len)
                done += segs[i].len

    cdef void _copy_in(self, uint64_t gpa, const unsigned char[::1] src) except *:
        cdef Segment segs[64]
        cdef int n, i
        cdef uint64_t done = 0
        if self.closed:
            raise GuestMemoryError("guest memory is closed")
        n = self.segments(gpa, src.shape[0], segs, 64)
        if n < 0:
            raise GuestMemoryError(f"guest range [{gpa:#x}, +{src.shape[0]:#x}) is not mapped")
        with nogil:
            for i in range(n):
                memcpy(segs[i].ptr, &src[done], segs[i].len)
                done += segs[i].len

    def view(self, uint64_t gpa, uint64_t length):
        """A writable zero-copy view of a range inside one region; it pins the
        mapping, so it stays valid even after the region is removed."""
        cdef uint8_t* p = self.checked(gpa, length)
        return pinned_view(self.pins, p, length)

    def read_u16(self, uint64_t gpa):
        return (<uint16_t*>self.checked(gpa, 2))[0]

    def read_u32(self, uint64_t gpa):
        return (<uint32_t*>self.checked(gpa, 4))[0]

    def read_u64(self, uint64_t gpa):
        return (<uint64_t*>self.checked(gpa, 8))[0]

    def write_u16(self, uint64_t gpa, uint16_t value):
        (<uint16_t*>self.checked(gpa, 2))[0] = value

    def write_u32(self, uint64_t gpa, uint32_t value):
        (<uint32_t*>self.checked(gpa, 4))[0] = value

    def write_u64(self, uint64_t gpa, uint64_t value):
        (<uint64_t*>self.checked(gpa, 8))[0] = value
