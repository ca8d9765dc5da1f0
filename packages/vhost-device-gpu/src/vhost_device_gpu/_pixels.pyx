# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Pixel copies in C with the GIL released: guest backing (scattered pages) into a
resource, rectangles between host buffers, and channel order into what the display
wants. Every range is checked here, before any byte moves, so a caller's mistake is a
ValueError and never a stray write."""

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy


cdef class Backing:
    """A resource's backing store: guest memory segments, in order, as one byte range.

    Built from the zero-copy views of the guest's entries; holding the views keeps the
    mappings alive however the memory table changes."""

    cdef uint8_t** ptrs
    cdef uint64_t* lens
    cdef uint64_t* starts
    cdef int count
    cdef readonly uint64_t size
    cdef list _views

    def __cinit__(self, views):
        cdef int i = 0
        cdef unsigned char[::1] mv
        cdef uint64_t total = 0
        views = [v for v in views if len(v)]
        self._views = []
        self.count = len(views)
        n = self.count if self.count else 1
        self.ptrs = <uint8_t**>malloc(n * sizeof(uint8_t*))
        self.lens = <uint64_t*>malloc(n * sizeof(uint64_t))
        self.starts = <uint64_t*>malloc(n * sizeof(uint64_t))
        if self.ptrs == NULL or self.lens == NULL or self.starts == NULL:
            raise MemoryError()
        for view in views:
            mv = view
            self._views.append(mv)
            self.ptrs[i] = &mv[0]
            self.lens[i] = mv.shape[0]
            self.starts[i] = total
            total += mv.shape[0]
            i += 1
        self.size = total

    def __dealloc__(self):
        free(self.ptrs)
        free(self.lens)
        free(self.starts)

    cdef int _find(self, uint64_t offset) noexcept nogil:
        """The segment holding byte `offset` (offset < size)."""
        cdef int lo = 0
        cdef int hi = self.count - 1
        cdef int mid
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo

    cdef void _read(self, uint64_t offset, uint8_t* dst, uint64_t length) noexcept nogil:
        cdef int i
        cdef uint64_t skip, take
        if length == 0:
            return
        i = self._find(offset)
        skip = offset - self.starts[i]
        while length:
            take = self.lens[i] - skip
            if take > length:
                take = length
            memcpy(dst, self.ptrs[i] + skip, take)
            dst += take
            length -= take
            skip = 0
            i += 1

    def read(self, uint64_t offset, uint64_t length):
        """`length` bytes at `offset` (for tests and small reads such as a cursor)."""
        _check("backing", self.size, offset, length, length, 1)
        out = bytearray(length)
        cdef unsigned char[::1] dst = out
        if length:
            with nogil:
                self._read(offset, &dst[0], length)
        return bytes(out)


cdef _check(str what, object size, object offset, object stride, object row_bytes,
            object rows):
    """rows x row_bytes at offset, stride apart, lie within size (Python ints: no
    wrap-around)."""
    if rows == 0 or row_bytes == 0:
        return
    last = offset + (rows - 1) * stride + row_bytes  # Python ints: exact
    if last > size:
        raise ValueError(f"{what}: bytes up to {last} needed, {size} there")


def gather(Backing src, uint64_t src_offset, uint64_t src_stride, uint64_t row_bytes,
           uint64_t rows, unsigned char[::1] dst, uint64_t dst_offset, uint64_t dst_stride):
    """Copy `rows` rows of `row_bytes` from the backing (from `src_offset`, `src_stride`
    apart) into `dst` (from `dst_offset`, `dst_stride` apart)."""
    _check("guest backing", src.size, src_offset, src_stride, row_bytes, rows)
    _check("resource", dst.shape[0], dst_offset, dst_stride, row_bytes, rows)
    if rows == 0 or row_bytes == 0:
        return
    cdef uint64_t r
    cdef uint8_t* out = &dst[0]
    with nogil:
        if src_stride == row_bytes and dst_stride == row_bytes:
            src._read(src_offset, out + dst_offset, row_bytes * rows)
        else:
            for r in range(rows):
                src._read(src_offset + r * src_stride, out + dst_offset + r * dst_stride,
                          row_bytes)


def copy_rect(const unsigned char[::1] src, uint64_t src_offset, uint64_t src_stride,
              uint64_t row_bytes, uint64_t rows, unsigned char[::1] dst,
              uint64_t dst_offset, uint64_t dst_stride):
    """Copy `rows` rows of `row_bytes` between two host buffers."""
    _check("source", src.shape[0], src_offset, src_stride, row_bytes, rows)
    _check("destination", dst.shape[0], dst_offset, dst_stride, row_bytes, rows)
    if rows == 0 or row_bytes == 0:
        return
    cdef uint64_t r
    cdef const uint8_t* inp = &src[0]
    cdef uint8_t* out = &dst[0]
    with nogil:
        if src_stride == row_bytes and dst_stride == row_bytes:
            memcpy(out + dst_offset, inp + src_offset, row_bytes * rows)
        else:
            for r in range(rows):
                memcpy(out + dst_offset + r * dst_stride, inp + src_offset + r * src_stride,
                       row_bytes)


def swizzle(unsigned char[::1] buf, int b, int g, int r, int a, bint opaque):
    """Rewrite 4-byte pixels in place into B, G, R, A byte order (a little-endian
    A8R8G8B8 word, what QEMU's display takes) from a format whose blue, green, red and
    alpha bytes sit at indices b, g, r, a; `opaque` writes 0xff as alpha (a format with
    an X byte)."""
    if buf.shape[0] % 4:
        raise ValueError(f"{buf.shape[0]} bytes are not whole 4-byte pixels")
    for index in (b, g, r, a):
        if not 0 <= index < 4:
            raise ValueError(f"channel index {index} outside a 4-byte pixel")
    cdef Py_ssize_t i, n = buf.shape[0]
    cdef uint8_t p0, p1, p2, p3
    cdef uint8_t px[4]
    if n == 0 or (b == 0 and g == 1 and r == 2 and a == 3 and not opaque):
        return
    cdef uint8_t* p = &buf[0]
    with nogil:
        i = 0
        while i < n:
            px[0] = p[i]
            px[1] = p[i + 1]
            px[2] = p[i + 2]
            px[3] = p[i + 3]
            p0 = px[b]
            p1 = px[g]
            p2 = px[r]
            p3 = 0xFF if opaque else px[a]
            p[i] = p0
            p[i + 1] = p1
            p[i + 2] = p2
            p[i + 3] = p3
            i += 4
