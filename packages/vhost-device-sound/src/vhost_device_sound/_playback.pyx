# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The guest's playback (tx) buffers that an output stream holds, kept and returned in C.

Why C: while a stream plays, the worker wakes once per host period (about 94 times a
second with PipeWire and a tight guest buffer), and each wake-up takes what the guest
posted, copies samples into the PcmRing as room allows, and returns the buffers whose
last byte the host consumed. Done in Python that was about two thirds of the daemon's
CPU; here it is one call per wake-up with no Python object per buffer.

A held buffer is its chain in the ChainBatch it was popped in (the batch's pins keep the
guest memory it points into mapped), its sample byte count, how many of them are in the
ring, and the ring position of its last byte once all are. Samples are copied straight
from guest memory into the ring. Completion writes the pcm_status into the buffer's
last bytes and adds it to the used ring; the guest is interrupted once per call, if it
asked to be (EVENT_IDX). A ring that was stopped takes nothing back (the buffer is
dropped with it), as `stream_io.complete` does.

The play-out clock: Linux's virtio_snd moves its hardware pointer by a period each
time a tx buffer comes back, so a buffer must come back when its last frame has been
*played*, not merely taken by the host (PipeWire takes a whole quantum at the start of
its cycle, an ALSA thread a whole PCM buffer's worth). From START every buffer gets a
deadline: the moment an ideal device would have played its last frame, playing each
buffer once the one before it is done, or once it arrived if the stream had run dry.
A buffer is returned once its deadline has passed and all of it is in the ring, from
which the host plays it (a host that is slower than the clock fills the ring, and a
buffer that does not fit waits, which holds the guest back; one that is faster does not
hurry it). `step` says when the next deadline falls, for the device's one-shot timer.

Buffers that are not plainly this stream's (malformed, another stream's, over the
stream's buffer_bytes) are never held here: `step` hands them to the device's Python
`route`, which refuses them with the same checks and log messages as ever.
"""

import logging

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.errno cimport EAGAIN, errno
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport write

from vhost_user_core.memory cimport Segment
from vhost_user_core.ring cimport vq_load_acquire16
from vhost_user_core.virtqueue cimport (
    ChainBatch, ChainInfo, DescriptorChain, Virtqueue, chain_read,
)
from vhost_device_sound._pcmring cimport (
    PcmRing, drain_fd, pcm_ring, ring_discard, ring_fill, ring_produce, ring_read_pos,
    ring_write_pos,
)

log = logging.getLogger(__name__)

# struct virtio_snd_pcm_xfer (le32 stream_id) and virtio_snd_pcm_status (le32 status,
# le32 latency_bytes); VIRTIO_SND_S_OK.
cdef enum:
    _XFER_SIZE = 4
    _STATUS_SIZE = 8
    _S_OK = 0x8000

XFER_SIZE = _XFER_SIZE
STATUS_SIZE = _STATUS_SIZE
#: A deadline this close is as good as reached: the timer that fires for it (or the
#: period tick that shares its anchor) must not miss it by a rounding error.
DUE_SLACK = 0.0005


cdef double _monotonic() noexcept nogil:
    """time.monotonic(), without Python."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef struct Held:
    PyObject* batch      # owned reference: keeps `info` and the guest memory alive
    ChainInfo* info
    uint64_t size        # sample bytes (the readable part after the header)
    uint64_t done        # of which copied into the ring
    uint64_t end_pos     # ring write position after its last byte, once `queued`
    bint queued
    bint timed           # `due` is set (the clock runs and the buffer is queued)
    double due           # CLOCK_MONOTONIC seconds by which its last frame is played


cdef uint64_t _to_ring(ChainBatch batch, ChainInfo* info, uint64_t offset, uint64_t n,
                       pcm_ring* ring) noexcept:
    """Copy up to n readable bytes from `offset` of a chain into `ring`, as far as it
    has room; returns the byte count."""
    cdef uint32_t s = info.first_seg
    cdef uint32_t end = s + info.n_read
    cdef uint64_t moved = 0, take, put
    cdef Segment* seg
    while n and s < end:
        seg = &batch.segs[s]
        s += 1
        if offset >= seg.len:
            offset -= seg.len
            continue
        take = seg.len - offset if seg.len - offset < n else n
        put = ring_produce(ring, seg.ptr + offset, take)
        moved += put
        n -= put
        if put < take:
            break
        offset = 0
    return moved


cdef void _write_status(ChainBatch batch, ChainInfo* info, uint32_t status,
                        uint32_t latency) noexcept:
    """Scatter the pcm_status into the last STATUS_SIZE writable bytes of a chain."""
    cdef uint8_t out[_STATUS_SIZE]
    cdef uint32_t s = info.first_seg + info.n_read
    cdef uint32_t end = s + info.n_write
    cdef uint64_t skip = info.write_len - _STATUS_SIZE, left = _STATUS_SIZE, done = 0, take
    cdef Segment* seg
    cdef int i
    for i in range(4):
        out[i] = (status >> (8 * i)) & 0xFF
        out[4 + i] = (latency >> (8 * i)) & 0xFF
    while left and s < end:
        seg = &batch.segs[s]
        s += 1
        if skip >= seg.len:
            skip -= seg.len
            continue
        take = seg.len - skip if seg.len - skip < left else left
        memcpy(seg.ptr + skip, out + done, take)
        skip = 0
        done += take
        left -= take


cdef class _Used:
    """Where completions go for one call: the vring's queue if it takes buffers back
    (`Vring.ready`), and whether any were added (to interrupt the guest once)."""
    cdef Virtqueue queue
    cdef object vring
    cdef int added

    cdef void add(self, ChainInfo* info) noexcept:
        if self.queue is None:
            return
        if self.queue.push_used(info.head, _STATUS_SIZE) < 0:
            # What Vring.complete_one's QueueError would have said.
            log.warning(
                "cannot complete an I/O buffer: queue %d is broken, not configured, or "
                "head %d is outside it", self.queue.index, info.head
            )
            return
        self.added += 1

    cdef int signal(self) except -1:
        """Vring.signal_used, once for everything added."""
        cdef uint64_t one = 1
        if not self.added:
            return 0
        self.added = 0
        call_fd = self.vring.call_fd
        if call_fd is not None and self.queue.notify_due():
            if write(<int>call_fd, &one, 8) < 0 and errno != EAGAIN:
                raise OSError(errno, "cannot signal the guest")
        return 0


cdef _Used _used_of(object vring):
    cdef _Used used = _Used.__new__(_Used)
    cdef Virtqueue queue
    used.vring = vring
    used.added = 0
    used.queue = None
    if vring is not None and vring.started:
        queue = vring.queue
        if queue.desc != NULL:
            used.queue = queue
    return used


cdef object _poll(object vring):
    """Vring.poll, but without its Python frames when the guest posted nothing new
    since the last wake-up; the pop itself, and the report of a ring the guest broke,
    stay the Vring's."""
    cdef Virtqueue queue
    if vring is None or not vring.started or not vring.enabled:
        return None
    queue = vring.queue
    if queue.desc == NULL or queue._broken:
        return None
    queue.disable_notification()  # what Vring.poll does first, pending or not
    if vq_load_acquire16(&queue.avail[1]) == queue.next_avail:
        return None
    return vring.poll()


cdef class PlaybackBuffers:
    """A FIFO of held tx buffers for one output stream (see the module doc)."""

    cdef Held* items
    cdef Py_ssize_t first, count, cap
    cdef readonly uint64_t held_bytes
    cdef readonly uint32_t stream_id
    cdef bint clock_running
    cdef double bytes_per_second
    cdef double last_due     # the deadline of the last buffer given one

    def __cinit__(self, uint32_t stream_id):
        self.items = NULL
        self.first = self.count = self.cap = 0
        self.held_bytes = 0
        self.stream_id = stream_id
        self.clock_running = False
        self.bytes_per_second = 0.0
        self.last_due = 0.0

    def __dealloc__(self):
        while self.count:
            self._drop_front()
        free(self.items)

    def __len__(self):
        return self.count

    # -- the FIFO ----------------------------------------------------------------------

    cdef inline Held* _at(self, Py_ssize_t i) noexcept:
        return &self.items[(self.first + i) % self.cap]

    cdef int _push(self, ChainBatch batch, ChainInfo* info) except -1:
        cdef Py_ssize_t cap, i
        cdef Held* grown
        cdef Held* h
        if self.count == self.cap:
            cap = self.cap * 2 if self.cap else 16
            grown = <Held*>malloc(cap * sizeof(Held))
            if grown == NULL:
                raise MemoryError()
            for i in range(self.count):
                grown[i] = self._at(i)[0]
            free(self.items)
            self.items = grown
            self.first = 0
            self.cap = cap
        h = &self.items[(self.first + self.count) % self.cap]
        Py_INCREF(batch)
        h.batch = <PyObject*>batch
        h.info = info
        h.size = info.read_len - _XFER_SIZE
        h.done = 0
        h.end_pos = 0
        h.queued = False
        h.timed = False
        h.due = 0.0
        self.count += 1
        self.held_bytes += h.size
        return 0

    cdef void _drop_front(self) noexcept:
        cdef Held* h = &self.items[self.first]
        cdef PyObject* batch = h.batch
        h.batch = NULL
        self.held_bytes -= h.size
        self.first = (self.first + 1) % self.cap
        self.count -= 1
        Py_XDECREF(batch)

    cdef void _complete_front(self, _Used used, uint32_t latency) noexcept:
        cdef Held* h = &self.items[self.first]
        _write_status(<ChainBatch>h.batch, h.info, _S_OK, latency)
        used.add(h.info)
        self._drop_front()

    # -- the data path -----------------------------------------------------------------

    cdef void _time(self, Held* h, double now) noexcept:
        """Give a queued buffer its deadline: it plays after the one before it, or from
        `now` if the stream ran dry before it came."""
        cdef double begin = self.last_due if self.last_due > now else now
        h.due = begin + h.size / self.bytes_per_second
        h.timed = True
        self.last_due = h.due

    cdef void _feed(self, pcm_ring* ring) noexcept:
        cdef Py_ssize_t i
        cdef Held* h
        cdef double now = 0.0
        for i in range(self.count):
            h = self._at(i)
            if h.queued:
                continue
            if h.done < h.size:
                h.done += _to_ring(<ChainBatch>h.batch, h.info, _XFER_SIZE + h.done,
                                   h.size - h.done, ring)
                if h.done < h.size:
                    return  # the ring is full
            h.end_pos = ring_write_pos(ring)
            h.queued = True
            if self.clock_running:
                if now == 0.0:
                    now = _monotonic()
                self._time(h, now)

    cdef double _complete_played(self, _Used used, pcm_ring* ring, bint timed) noexcept:
        """`timed`: return the buffers in the ring whose deadline has passed; returns
        the deadline of the first one still to come (0: none, or not yet in the ring:
        the host's next notification, when it makes room, decides). Untimed: return
        what the device's own period timer consumed, at the clock's pace."""
        cdef uint64_t read_pos = ring_read_pos(ring)
        cdef double now = _monotonic() + DUE_SLACK
        cdef Held* h
        while self.count:
            h = &self.items[self.first]
            if not h.queued:
                return 0.0
            if timed:
                if not h.timed:
                    return 0.0
                if h.due > now:
                    return h.due
            elif h.end_pos > read_pos:
                return 0.0
            self._complete_front(used, <uint32_t>ring_fill(ring))
        return 0.0

    cdef int _take(self, object vring, uint64_t limit, object route) except -1:
        """Pop what the guest posted; hold this stream's buffers, route the rest."""
        cdef ChainBatch batch
        cdef ChainInfo* info
        cdef int i
        cdef uint8_t header[_XFER_SIZE]
        cdef uint32_t stream_id
        popped = _poll(vring)
        if not isinstance(popped, ChainBatch):
            return 0  # nothing posted, or the ring is not active
        batch = <ChainBatch>popped
        for i in range(batch.count):
            info = &batch.chains[i]
            if (
                info.error == 0
                and info.read_len >= _XFER_SIZE
                and info.write_len >= _STATUS_SIZE
                and chain_read(batch, info, 0, header, _XFER_SIZE) == _XFER_SIZE
            ):
                stream_id = (header[0] | header[1] << 8 | header[2] << 16
                             | <uint32_t>header[3] << 24)
                if (stream_id == self.stream_id
                        and self.held_bytes + info.read_len - _XFER_SIZE <= limit):
                    self._push(batch, info)
                    continue
            route(batch[i])
        return 0

    # -- Python API --------------------------------------------------------------------

    def append(self, DescriptorChain chain not None):
        """Hold a buffer the device has checked (header, status room, stream, size)."""
        if chain.info == NULL or chain.info.error or chain.info.read_len < _XFER_SIZE \
                or chain.info.write_len < _STATUS_SIZE:
            raise ValueError("not a usable playback buffer")
        self._push(chain.batch, chain.info)

    def feed(self, PcmRing ring not None):
        """Copy held samples into the ring, in order, while it has room."""
        self._feed(&ring.ring)

    def start_clock(self, double now, double bytes_per_second):
        """START: the stream plays from `now` (CLOCK_MONOTONIC seconds); the buffers
        already queued get their deadlines, in order, the rest as they are queued."""
        cdef Py_ssize_t i
        cdef Held* h
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.clock_running = True
        self.bytes_per_second = bytes_per_second
        self.last_due = now
        for i in range(self.count):
            h = self._at(i)
            if h.queued:
                self._time(h, now)

    def stop_clock(self):
        """STOP (or pause): nothing plays and nothing is due until the next START."""
        cdef Py_ssize_t i
        self.clock_running = False
        for i in range(self.count):
            self._at(i).timed = False

    def complete_played(self, vring, PcmRing ring not None):
        """Return the buffers in the ring whose deadline has passed (latency: the
        ring's fill at that moment); interrupt the guest once if it asked for it.
        Returns the next deadline to wake up for (0: none)."""
        cdef _Used used = _used_of(vring)
        cdef double due = self._complete_played(used, &ring.ring, True)
        used.signal()
        return due

    def step(self, vring, PcmRing ring not None, route, uint64_t limit, bint take,
             size_t discard=0):
        """One wake-up of a playing stream: reset the ring's notification; if `take`,
        pop what the guest posted (`vring.poll()`), holding this stream's buffers while
        at most `limit` bytes are held and handing any other to `route`, and queue them
        in the ring; drop `discard` bytes from the ring (played by the device's period
        timer, whose pace is the clock: then what it played goes back at once);
        return what was played and is due; refill the ring; interrupt the guest once if
        it asked for it. Returns the next deadline to wake up for (0: none). (The order
        of stream_io's Python path, so latencies are the same.)"""
        cdef _Used used = _used_of(vring)
        cdef double due
        drain_fd(&ring.ring)
        if take:
            self._take(vring, limit, route)
            self._feed(&ring.ring)  # as it arrives: completions count it as latency
        if discard:
            ring_discard(&ring.ring, discard)
        due = self._complete_played(used, &ring.ring, not discard)
        self._feed(&ring.ring)
        used.signal()
        return due

    def flush(self, vring, uint32_t latency):
        """Return every held buffer now, played or not."""
        cdef _Used used = _used_of(vring)
        while self.count:
            self._complete_front(used, latency)
        used.signal()

    def clear(self):
        """Forget every held buffer (the guest's rings are gone)."""
        while self.count:
            self._drop_front()
