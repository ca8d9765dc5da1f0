# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Device side of a split virtqueue (virtio 1.x section 2.7), hostile-input proof.

Chains are walked in C into a compact array of host segments, one ChainBatch object per
pop. Every buffer is checked against guest memory; a malformed chain comes back with an
error and no buffers, never an exception, and nothing outside guest memory is touched.
A batch pins the memory mappings its segments point into (GuestMemory.pins), so it stays
safe to use after the VMM changed the memory table.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from .memory cimport GuestMemory, Segment, pinned_view
from .ring cimport (
    AVAIL_F_NO_INTERRUPT, F_INDIRECT, F_NEXT, F_WRITE, USED_F_NO_NOTIFY, vq_full_fence,
    vq_load16, vq_load_acquire16, vq_need_event, vq_store16, vq_store_release16, vring_desc,
    vring_used_elem,
)

from .errors import QueueError

VIRTQ_DESC_F_NEXT = F_NEXT
VIRTQ_DESC_F_WRITE = F_WRITE
VIRTQ_DESC_F_INDIRECT = F_INDIRECT

cdef enum ChainError:
    OK = 0
    E_INDEX = 1
    E_TOO_LONG = 2
    E_NESTED = 3
    E_INDIRECT_SIZE = 4
    E_INDIRECT_MEMORY = 5
    E_INDIRECT_NEXT = 6
    E_MEMORY = 7
    E_ORDER = 8

_ERRORS = {
    E_INDEX: "descriptor index out of range",
    E_TOO_LONG: "chain longer than the queue (or a descriptor loop)",
    E_NESTED: "nested indirect descriptor",
    E_INDIRECT_SIZE: "indirect table size is zero or not a multiple of 16",
    E_INDIRECT_MEMORY: "indirect table outside guest memory",
    E_INDIRECT_NEXT: "indirect descriptor with the NEXT flag",
    E_MEMORY: "buffer outside guest memory",
    E_ORDER: "device-readable buffer after a device-writable one",
}

#: Segments one descriptor may split into (GPA-contiguous regions it spans).
cdef enum:
    MAX_SEGS_PER_DESC = 8

cdef class ChainBatch:
    def __cinit__(self):
        self.chains = NULL
        self.segs = NULL
        self.count = 0
        self.seg_count = 0
        self.seg_cap = 0

    def __dealloc__(self):
        free(self.chains)
        free(self.segs)

    cdef int _reserve(self, uint32_t extra) noexcept nogil:
        cdef uint32_t cap
        cdef Segment* grown
        if self.seg_count + extra <= self.seg_cap:
            return 0
        cap = self.seg_cap * 2 if self.seg_cap else 64
        while cap < self.seg_count + extra:
            cap *= 2
        grown = <Segment*>realloc(self.segs, cap * sizeof(Segment))
        if grown == NULL:
            return -1
        self.segs = grown
        self.seg_cap = cap
        return 0

    def __len__(self):
        return self.count

    def __getitem__(self, Py_ssize_t index):
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError("chain index out of range")
        cdef DescriptorChain chain = DescriptorChain.__new__(DescriptorChain)
        chain.batch = self
        chain.info = &self.chains[index]
        return chain

    def __iter__(self):
        cdef int i
        for i in range(self.count):
            yield self[i]

    def writable_lengths(self):
        cdef int i
        return [self.chains[i].write_len for i in range(self.count)]

    def scatter(self, data, lengths):
        """Write consecutive slices of `data` into the first len(lengths) chains."""
        cdef const unsigned char[::1] src = data
        cdef int n = len(lengths), i
        cdef uint64_t* want
        cdef uint64_t total = 0
        if n > self.count:
            raise ValueError("more lengths than chains")
        want = <uint64_t*>malloc((n if n else 1) * sizeof(uint64_t))
        if want == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                want[i] = lengths[i]
                if want[i] > self.chains[i].write_len:
                    raise ValueError(f"chain {i}: {want[i]} bytes exceed its writable "
                                     f"{self.chains[i].write_len}")
                total += want[i]
            if total > <uint64_t>src.shape[0]:
                raise ValueError(f"{total} bytes requested from {src.shape[0]}")
            if total:
                with nogil:
                    self._scatter(&src[0], want, n)
        finally:
            free(want)

    cdef void _scatter(self, const unsigned char* src, uint64_t* want, int n) noexcept nogil:
        cdef int i
        cdef uint32_t s
        cdef uint64_t left, take
        cdef Segment* seg
        for i in range(n):
            left = want[i]
            s = self.chains[i].first_seg + self.chains[i].n_read
            while left:
                seg = &self.segs[s]
                take = left if left < seg.len else seg.len
                memcpy(seg.ptr, src, take)
                src += take
                left -= take
                s += 1


cdef uint64_t chain_read(ChainBatch batch, ChainInfo* info, uint64_t offset, uint8_t* dst,
                         uint64_t n) noexcept nogil:
    """Copy up to n of a chain's device-readable bytes, from `offset`, into dst; the
    byte count (less if the chain is shorter)."""
    cdef uint32_t s = info.first_seg
    cdef uint32_t end = s + info.n_read
    cdef uint64_t done = 0, take
    cdef Segment* seg
    while done < n and s < end:
        seg = &batch.segs[s]
        s += 1
        if offset >= seg.len:
            offset -= seg.len
            continue
        take = seg.len - offset if seg.len - offset < n - done else n - done
        memcpy(dst + done, seg.ptr + offset, take)
        done += take
        offset = 0
    return done


cdef class DescriptorChain:
    @property
    def head(self):
        return self.info.head

    @property
    def error(self):
        return _ERRORS.get(self.info.error) if self.info.error else None

    @property
    def readable_len(self):
        return self.info.read_len

    @property
    def writable_len(self):
        return self.info.write_len

    def read(self, Py_ssize_t max_len=-1):
        """Gather the device-readable buffers (up to max_len bytes)."""
        cdef uint64_t total = self.info.read_len
        if 0 <= max_len < <Py_ssize_t>total:
            total = max_len
        out = bytearray(total)
        cdef unsigned char[::1] dst = out
        if total:
            with nogil:
                chain_read(self.batch, self.info, 0, &dst[0], total)
        return bytes(out)

    def write(self, data, Py_ssize_t offset=0):
        """Scatter `data` into the device-writable buffers from `offset`; returns the
        byte count written (never touches device-readable buffers)."""
        cdef const unsigned char[::1] src = data
        cdef uint64_t skip = offset if offset > 0 else 0
        cdef uint64_t left = src.shape[0], done = 0, take, room
        cdef uint32_t s = self.info.first_seg + self.info.n_read
        cdef uint32_t end = s + self.info.n_write
        cdef Segment* seg
        with nogil:
            while left and s < end:
                seg = &self.batch.segs[s]
                if skip >= seg.len:
                    skip -= seg.len
                    s += 1
                    continue
                room = seg.len - skip
                take = left if left < room else room
                memcpy(seg.ptr + skip, &src[done], take)
                skip = 0
                done += take
                left -= take
                s += 1
        return done

    def _views(self, uint32_t first, uint32_t count, bint readonly):
        cdef uint32_t s
        return [pinned_view(self.batch, self.batch.segs[s].ptr, self.batch.segs[s].len,
                            readonly) for s in range(first, first + count)]

    def readable_views(self):
        """Read-only views: the device must not write what the driver gave it to read."""
        return self._views(self.info.first_seg, self.info.n_read, True)

    def writable_views(self):
        return self._views(self.info.first_seg + self.info.n_read, self.info.n_write, False)

    def __repr__(self):
        return (f"DescriptorChain(head={self.head}, readable={self.readable_len}, "
                f"writable={self.writable_len}, error={self.error!r})")


cdef class Virtqueue:
    def __init__(self, int index, int max_size):
        if not 0 < max_size <= 32768 or max_size & (max_size - 1):
            raise QueueError(f"max queue size {max_size} is not a power of two in 1..32768")
        self.index = index
        self.max_size = max_size
        self._size = max_size
        self.reset()

    @property
    def size(self):
        return self._size

    @property
    def broken(self):
        return self._broken

    @property
    def configured(self):
        return self.desc != NULL

    def set_size(self, size):
        # A Python int, checked before it meets a C type: the VMM's u32 may not fit one.
        if not 0 < size <= self.max_size or size & (size - 1):
            raise QueueError(f"queue {self.index}: size {size} is not a power of two in "
                             f"1..{self.max_size}")
        self._size = size

    def reset(self):
        """Forget addresses, indices and errors (GET_VRING_BASE / RESET_DEVICE)."""
        self.memory = None
        self.pins = None
        self.desc = NULL
        self.avail = NULL
        self.used = NULL
        self.used_ring = NULL
        self.desc_gpa = self.avail_gpa = self.used_gpa = 0
        self.next_avail = 0
        self.next_used = 0
        self.signalled_used = 0
        self._broken = False
        self.event_idx = False

    def set_addresses(self, GuestMemory memory, uint64_t desc, uint64_t avail, uint64_t used):
        if desc & 15 or avail & 1 or used & 3:
            raise QueueError(f"queue {self.index}: misaligned ring "
                             f"(desc {desc:#x}, avail {avail:#x}, used {used:#x})")
        self.desc_gpa, self.avail_gpa, self.used_gpa = desc, avail, used
        self._map(memory)

    def set_memory(self, GuestMemory memory):
        if self.desc_gpa or self.avail_gpa or self.used_gpa:
            self._map(memory)

    cdef _map(self, GuestMemory memory):
        cdef uint64_t n = self._size
        cdef uint8_t* d = memory.translate(self.desc_gpa, 16 * n)
        cdef uint8_t* a = memory.translate(self.avail_gpa, 6 + 2 * n)
        cdef uint8_t* u = memory.translate(self.used_gpa, 6 + 8 * n)
        if d == NULL or a == NULL or u == NULL:
            self.desc = NULL
            self.memory = None
            self.pins = None
            raise QueueError(f"queue {self.index}: ring areas are not inside guest memory")
        self.memory = memory
        self.pins = memory.pins
        self.desc = <vring_desc*>d
        self.avail = <uint16_t*>a
        self.used = <uint16_t*>u
        self.used_ring = <vring_used_elem*>(u + 4)

    def sync_used_index(self):
        """Seed next_used from the guest's used->idx (a restarted backend)."""
        if self.used != NULL:
            self.next_used = vq_load16(&self.used[1])
            self.signalled_used = self.next_used

    def _check(self):
        if self.desc == NULL:
            raise QueueError(f"queue {self.index} is not configured")
        if self._broken:
            raise QueueError(f"queue {self.index} is broken")

    def pending(self):
        self._check()
        return self._pending()

    cdef uint16_t _pending(self) except? 0xFFFF:
        cdef uint16_t n = <uint16_t>(vq_load_acquire16(&self.avail[1]) - self.next_avail)
        if n > self._size:
            self._broken = True
            raise QueueError(f"queue {self.index}: avail index moved {n} entries ahead of a "
                             f"{self._size}-entry ring")
        return n

    def pop(self, int limit=0):
        """Pop up to `limit` available chains (0 = all)."""
        cdef ChainBatch batch = ChainBatch.__new__(ChainBatch)
        cdef uint16_t n, i, head
        cdef int failed = 0
        batch.pins = self.pins
        if self.desc == NULL or self._broken:
            return batch
        n = self._pending()
        if limit > 0 and n > limit:
            n = limit
        if n == 0:
            return batch
        batch.chains = <ChainInfo*>malloc(n * sizeof(ChainInfo))
        if batch.chains == NULL:
            raise MemoryError()
        for i in range(n):
            head = vq_load16(&self.avail[2 + <uint16_t>(self.next_avail + i) % self._size])
            if head >= self._size:
                self._broken = True
                raise QueueError(f"queue {self.index}: head index {head} outside the ring")
        with nogil:
            for i in range(n):
                head = vq_load16(&self.avail[2 + <uint16_t>(self.next_avail + i) % self._size])
                if self._walk(batch, head) < 0:
                    failed = 1
                    break
        if failed:
            raise MemoryError()
        self.next_avail = <uint16_t>(self.next_avail + n)
        return batch

    cdef int _walk(self, ChainBatch batch, uint16_t head) noexcept nogil:
        """Append chain `head` to `batch`; -1 only on allocation failure."""
        cdef ChainInfo* info = &batch.chains[batch.count]
        cdef vring_desc* table = self.desc
        cdef uint32_t table_len = self._size
        cdef uint32_t idx = head, seen = 0
        cdef bint indirect = False
        cdef vring_desc d
        cdef int n
        cdef uint8_t* p
        batch.count += 1
        info.head = head
        info.error = OK
        info.first_seg = batch.seg_count
        info.n_read = info.n_write = 0
        info.read_len = info.write_len = 0
        while True:
            if idx >= table_len:
                info.error = E_INDEX
                break
            seen += 1
            if seen > self._size:
                info.error = E_TOO_LONG
                break
            memcpy(&d, &table[idx], sizeof(vring_desc))
            if d.flags & F_INDIRECT:
                if indirect:
                    info.error = E_NESTED
                    break
                if d.flags & F_NEXT:
                    info.error = E_INDIRECT_NEXT
                    break
                if d.len == 0 or d.len % 16:
                    info.error = E_INDIRECT_SIZE
                    break
                p = self.memory.translate(d.addr, d.len)
                if p == NULL:
                    info.error = E_INDIRECT_MEMORY
                    break
                table = <vring_desc*>p
                table_len = d.len // 16
                indirect = True
                idx = 0
                continue
            if d.len:
                if d.flags & F_WRITE == 0 and info.n_write:
                    info.error = E_ORDER
                    break
                if batch._reserve(MAX_SEGS_PER_DESC) < 0:
                    return -1
                n = self.memory.segments(d.addr, d.len, &batch.segs[batch.seg_count],
                                         MAX_SEGS_PER_DESC)
                if n < 0:
                    info.error = E_MEMORY
                    break
                batch.seg_count += n
                if d.flags & F_WRITE:
                    info.n_write += n
                    info.write_len += d.len
                else:
                    info.n_read += n
                    info.read_len += d.len
            if not d.flags & F_NEXT:
                break
            idx = d.next
        if info.error:
            batch.seg_count = info.first_seg
            info.n_read = info.n_write = 0
            info.read_len = info.write_len = 0
        return 0

    def add_used(self, uint16_t head, uint32_t length):
        self._check()
        if head >= self._size:
            raise QueueError(f"queue {self.index}: head {head} outside the ring")
        cdef vring_used_elem* e = &self.used_ring[self.next_used % self._size]
        e.id = head
        e.len = length
        self.next_used = <uint16_t>(self.next_used + 1)
        vq_store_release16(&self.used[1], self.next_used)

    def add_used_batch(self, ChainBatch batch, lengths):
        """Complete the first len(lengths) chains of `batch`; one used-idx update."""
        cdef int n = len(lengths), i
        cdef vring_used_elem* e
        self._check()
        if n > batch.count:
            raise ValueError("more lengths than chains")
        for i in range(n):
            e = &self.used_ring[<uint16_t>(self.next_used + i) % self._size]
            e.id = batch.chains[i].head
            e.len = lengths[i]
        if n:
            self.next_used = <uint16_t>(self.next_used + n)
            vq_store_release16(&self.used[1], self.next_used)

    cdef int push_used(self, uint16_t head, uint32_t length) noexcept nogil:
        """add_used without Python objects: -1 (nothing added) where add_used raises
        QueueError (ring not configured or broken, head outside the ring)."""
        cdef vring_used_elem* e
        if self.desc == NULL or self._broken or head >= self._size:
            return -1
        e = &self.used_ring[self.next_used % self._size]
        e.id = head
        e.len = length
        self.next_used = <uint16_t>(self.next_used + 1)
        vq_store_release16(&self.used[1], self.next_used)
        return 0

    cdef bint notify_due(self) noexcept nogil:
        """needs_notification in C (it is this)."""
        cdef uint16_t old, new
        if self.used == NULL:
            return False
        vq_full_fence()
        old = self.signalled_used
        new = self.next_used
        self.signalled_used = new
        if self.event_idx:
            return vq_need_event(vq_load16(&self.avail[2 + self._size]), new, old)
        return new != old and not vq_load16(&self.avail[0]) & AVAIL_F_NO_INTERRUPT

    def needs_notification(self):
        """Whether the driver wants an interrupt for what was added since last time."""
        return self.notify_due()

    def disable_notification(self):
        if self.used != NULL and not self.event_idx:
            vq_store16(&self.used[0], vq_load16(&self.used[0]) | USED_F_NO_NOTIFY)

    def enable_notification(self):
        """Ask for kicks again; True if chains arrived meanwhile."""
        if self.used == NULL or self._broken:
            return False
        if self.event_idx:
            vq_store16(<uint16_t*>&self.used_ring[self._size], self.next_avail)
        else:
            vq_store16(&self.used[0], vq_load16(&self.used[0]) & ~USED_F_NO_NOTIFY)
        vq_full_fence()
        return vq_load_acquire16(&self.avail[1]) != self.next_avail
