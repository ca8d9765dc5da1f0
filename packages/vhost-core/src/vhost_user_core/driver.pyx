# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Driver side of a split virtqueue, for the Python frontend (tests and benchmarks).

It plays the guest driver on rings laid out in a GuestMemory: post buffers, publish
them, reap used entries. Batch calls are C loops so a benchmark measures the device,
not this side.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from .memory cimport GuestMemory
from .ring cimport (
    AVAIL_F_NO_INTERRUPT, F_INDIRECT, F_NEXT, F_WRITE, USED_F_NO_NOTIFY, vq_full_fence,
    vq_load16, vq_load_acquire16, vq_need_event, vq_store16, vq_store_release16, vring_desc,
    vring_used_elem,
)

from .errors import QueueError


cdef class DriverQueue:
    cdef GuestMemory memory
    cdef object pins              # keeps the rings mapped while this object lives
    cdef readonly uint16_t size
    cdef vring_desc* desc
    cdef uint16_t* avail
    cdef uint16_t* used
    cdef vring_used_elem* used_ring
    cdef bint event_idx
    cdef uint16_t* next_free      # free list links
    cdef uint16_t* chain_len      # descriptors owned by each head
    cdef uint16_t free_head
    cdef uint32_t num_free
    cdef uint16_t avail_shadow, published, last_used

    def __init__(self, GuestMemory memory, int size, uint64_t desc, uint64_t avail,
                 uint64_t used, bint event_idx=False):
        cdef int i
        if not 0 < size <= 32768 or size & (size - 1):
            raise QueueError(f"queue size {size} is not a power of two in 1..32768")
        d, a, u = DriverQueue.layout(size)
        self.memory = memory
        self.pins = memory.pins
        self.size = size
        self.desc = <vring_desc*>memory.checked(desc, d)
        self.avail = <uint16_t*>memory.checked(avail, a)
        self.used = <uint16_t*>memory.checked(used, u)
        self.used_ring = <vring_used_elem*>(<uint8_t*>self.used + 4)
        memset(self.desc, 0, d)
        memset(self.avail, 0, a)
        memset(self.used, 0, u)
        self.event_idx = event_idx
        self.next_free = <uint16_t*>malloc(size * sizeof(uint16_t))
        self.chain_len = <uint16_t*>malloc(size * sizeof(uint16_t))
        if self.next_free == NULL or self.chain_len == NULL:
            raise MemoryError()
        for i in range(size):
            self.next_free[i] = <uint16_t>(i + 1)
            self.chain_len[i] = 0
        self.free_head = 0
        self.num_free = size
        self.avail_shadow = self.published = self.last_used = 0

    def __dealloc__(self):
        free(self.next_free)
        free(self.chain_len)

    @staticmethod
    def layout(int size):
        """Byte sizes of (descriptor table, avail ring, used ring)."""
        return 16 * size, 6 + 2 * size, 6 + 8 * size

    @property
    def free_descriptors(self):
        return self.num_free

    cdef uint16_t _take(self) noexcept nogil:
        cdef uint16_t i = self.free_head
        self.free_head = self.next_free[i]
        self.num_free -= 1
        return i

    cdef void _push_avail(self, uint16_t head) noexcept nogil:
        vq_store16(&self.avail[2 + self.avail_shadow % self.size], head)
        self.avail_shadow = <uint16_t>(self.avail_shadow + 1)

    def add(self, buffers):
        """Post one chain of (gpa, length, device_writable); returns its head."""
        cdef int n = len(buffers), k
        cdef uint16_t head = 0, prev = 0, i
        if n == 0 or <uint32_t>n > self.num_free:
            raise QueueError(f"cannot post {n} descriptors ({self.num_free} free)")
        for k in range(n):
            gpa, length, writable = buffers[k]
            i = self._take()
            self.desc[i].addr = gpa
            self.desc[i].len = length
            self.desc[i].flags = F_WRITE if writable else 0
            self.desc[i].next = 0
            if k == 0:
                head = i
            else:
                self.desc[prev].flags |= F_NEXT
                self.desc[prev].next = i
            prev = i
        self.chain_len[head] = n
        self._push_avail(head)
        return head

    def add_indirect(self, uint64_t table_gpa, buffers):
        """Post one chain through an indirect table written at `table_gpa`."""
        cdef int n = len(buffers), k
        cdef vring_desc* table
        cdef uint16_t i
        if n == 0 or self.num_free == 0:
            raise QueueError("no descriptor free for an indirect chain")
        table = <vring_desc*>self.memory.checked(table_gpa, 16 * n)
        for k in range(n):
            gpa, length, writable = buffers[k]
            table[k].addr = gpa
            table[k].len = length
            table[k].flags = (F_WRITE if writable else 0) | (F_NEXT if k + 1 < n else 0)
            table[k].next = k + 1 if k + 1 < n else 0
        i = self._take()
        self.desc[i].addr = table_gpa
        self.desc[i].len = 16 * n
        self.desc[i].flags = F_INDIRECT
        self.desc[i].next = 0
        self.chain_len[i] = 1
        self._push_avail(i)
        return i

    def add_writable_batch(self, uint32_t count, uint64_t first_gpa, uint32_t length,
                           uint64_t stride):
        """Post `count` single-descriptor device-writable chains; returns how many."""
        cdef uint32_t k
        cdef uint16_t i
        if count > self.num_free:
            count = self.num_free
        with nogil:
            for k in range(count):
                i = self._take()
                self.desc[i].addr = first_gpa + k * stride
                self.desc[i].len = length
                self.desc[i].flags = F_WRITE
                self.desc[i].next = 0
                self.chain_len[i] = 1
                self._push_avail(i)
        return count

    def write_raw_descriptor(self, int index, uint64_t addr, uint32_t length, uint16_t flags,
                             uint16_t next):
        """Write a descriptor verbatim (hostile-input tests)."""
        if not 0 <= index < self.size:
            raise IndexError("descriptor index out of range")
        self.desc[index].addr = addr
        self.desc[index].len = length
        self.desc[index].flags = flags
        self.desc[index].next = next

    def push_avail(self, uint16_t head):
        """Put a raw head on the avail ring (hostile-input tests)."""
        self._push_avail(head)

    def set_avail_idx(self, uint16_t value):
        """Overwrite avail->idx verbatim (hostile-input tests)."""
        self.avail_shadow = value
        self.published = value
        vq_store_release16(&self.avail[1], value)

    def publish(self):
        """Make posted chains visible; True if the device wants a kick."""
        cdef uint16_t old = self.published, new = self.avail_shadow
        vq_store_release16(&self.avail[1], new)
        self.published = new
        vq_full_fence()
        if self.event_idx:
            return bool(vq_need_event(vq_load16(<uint16_t*>&self.used_ring[self.size]), new, old))
        return not vq_load16(&self.used[0]) & USED_F_NO_NOTIFY

    cdef void _free_chain(self, uint16_t head) noexcept nogil:
        cdef uint16_t i = head, n = self.chain_len[head], k
        for k in range(n - 1):
            i = self.desc[i].next
        # Splice the whole chain onto the free list.
        self.next_free[i] = self.free_head
        self.free_head = head
        self.num_free += n
        self.chain_len[head] = 0

    def get_used(self):
        """Reap every new used entry as (head, length)."""
        cdef uint16_t idx = vq_load_acquire16(&self.used[1])
        cdef vring_used_elem* e
        out = []
        while self.last_used != idx:
            e = &self.used_ring[self.last_used % self.size]
            if e.id >= self.size or self.chain_len[e.id] == 0:
                raise QueueError(f"device returned head {e.id} that is not in flight")
            out.append((e.id, e.len))
            self._free_chain(<uint16_t>e.id)
            self.last_used = <uint16_t>(self.last_used + 1)
        return out

    def reap(self):
        """Reap every new used entry; returns (count, total length)."""
        cdef uint16_t idx = vq_load_acquire16(&self.used[1])
        cdef vring_used_elem* e
        cdef uint32_t count = 0
        cdef uint64_t total = 0
        cdef bint bad = False
        with nogil:
            while self.last_used != idx:
                e = &self.used_ring[self.last_used % self.size]
                if e.id >= self.size or self.chain_len[e.id] == 0:
                    bad = True
                    break
                total += e.len
                count += 1
                self._free_chain(<uint16_t>e.id)
                self.last_used = <uint16_t>(self.last_used + 1)
        if bad:
            raise QueueError("device returned a head that is not in flight")
        return count, total

    def set_interrupt_suppressed(self, bint suppressed):
        if self.event_idx:
            vq_store16(&self.avail[2 + self.size],
                       <uint16_t>(self.last_used - 1) if suppressed else self.last_used)
        elif suppressed:
            vq_store16(&self.avail[0], vq_load16(&self.avail[0]) | AVAIL_F_NO_INTERRUPT)
        else:
            vq_store16(&self.avail[0], vq_load16(&self.avail[0]) & ~AVAIL_F_NO_INTERRUPT)
        vq_full_fence()

    def arm_interrupt(self):
        """Ask for an interrupt at the next used entry."""
        self.set_interrupt_suppressed(False)
