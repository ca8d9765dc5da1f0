# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The guest's playback (tx) buffers that an output stream holds, kept and returned in C.

Why C: a playing stream wakes every host period, and each wake-up takes what the guest
posted, copies samples into the PcmRing as room allows, and returns the buffers the
host has played. Done in Python that was about two thirds of the daemon's CPU; in C it
is one call per wake-up with no Python object per buffer. And since a wake-up of the
worker's Python loop costs more than all of that work (about 60 us of CPU on the
development VM, against 20 us for a C thread), a playing output's wake-ups are not the
worker's at all when they need not be:

- **Host cycles** (PipeWire): its realtime thread calls the ring's hook around each
  cycle (`_pcmring.host_cycle`): before it takes its quantum, `_cycle` pops what the
  guest posted and copies it into the ring; after, it returns what the host took (and
  is due within the cycle), refills the ring and interrupts the guest once.
- **The period clock** (the null backend, or an output switched off): a thread of its
  own (`clock_start`) ticks on the grid anchored at START and does the same around
  playing its bytes into nothing.

Both run without the GIL, under the device's session lock (`DeviceLock`), which they
only ever try: whoever else holds it (the session handling a request, the worker) may
be changing rings, memory or streams, and the cycle then leaves its work to the worker
(the ring's notification wakes it, `step` does the same in Python). What they need of
a ring is copied when the lock is released (`rt_configure`: the queue, a dup of its
call fd, whether the stream plays), so they never read a Python object. They take a
buffer only if it is plainly the stream's own (well formed, its stream id, within its
buffer_bytes) and pop it into a pool batch; anything else, or a ring in trouble, wakes
the worker, whose `step` pops and routes it as before.

A held buffer is its chain in the ChainBatch it was popped in (the batch's pins keep the
guest memory it points into mapped), its sample byte count, how many of them are in the
ring, and the ring position of its last byte once all are. Samples are copied straight
from guest memory into the ring. Completion writes the pcm_status into the buffer's
last bytes (its latency: what of the buffer is still to be heard, see `_latency`) and adds it to the used ring; the guest is interrupted once per call, if it
asked to be (EVENT_IDX). A ring that was stopped takes nothing back (the buffer is
dropped with it), as `stream_io.complete` does.

The play-out clock: Linux's virtio_snd moves its hardware pointer by a period each
time a tx buffer comes back, so a buffer must not come back before its last frame is
played. From START every buffer gets a deadline: the moment an ideal device would have
played its last frame, playing each buffer once the one before it is done, or once it
arrived if the stream had run dry. On a host that runs cycles a buffer goes back in the
cycle that took its last frame, once its deadline falls within that cycle: no earlier
than a quantum before it is heard, and never before the host had it (a stream joining
PipeWire's graph late holds the guest back rather than adding its delay to every later
buffer). Otherwise (ALSA, the worker's own wake-ups) it goes back once its deadline has
passed and all of it is in the ring, and `step` says when the next deadline falls, for
the device's one-shot timer. With the period clock, what a tick played goes back.

Buffers that are not plainly this stream's (malformed, another stream's, over the
stream's buffer_bytes) are never held here: `step` hands them to the device's Python
`route`, which refuses them with the same checks and log messages as ever.
"""

import logging
import os

from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.errno cimport EAGAIN, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport close, write

from vhost_user_core.memory cimport Segment
from vhost_user_core.ring cimport USED_F_NO_NOTIFY, vq_load16, vq_load_acquire16, vq_store16
from vhost_user_core.virtqueue cimport (
    ChainBatch, ChainInfo, DescriptorChain, Virtqueue, chain_read,
)
from vhost_device_sound._pcmring cimport (
    PcmRing, drain_fd, notify, pcm_ring, pthread_mutex_destroy, pthread_mutex_init,
    pthread_mutex_lock, pthread_mutex_t, pthread_mutex_trylock, pthread_mutex_unlock,
    ring_discard, ring_produce, ring_read_pos, ring_write_pos,
)

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t:
        pass
    int pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*) noexcept nogil,
                       void*)
    int pthread_join(pthread_t, void**)
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_condattr_init(pthread_condattr_t*)
    int pthread_condattr_setclock(pthread_condattr_t*, int)
    int pthread_condattr_destroy(pthread_condattr_t*)
    int pthread_cond_init(pthread_cond_t*, const pthread_condattr_t*)
    int pthread_cond_destroy(pthread_cond_t*)
    int pthread_cond_signal(pthread_cond_t*)
    int pthread_cond_timedwait(pthread_cond_t*, pthread_mutex_t*, const timespec*)
    ctypedef struct pthread_mutexattr_t:
        pass
    int pthread_mutexattr_init(pthread_mutexattr_t*)
    int pthread_mutexattr_settype(pthread_mutexattr_t*, int)
    int pthread_mutexattr_destroy(pthread_mutexattr_t*)
    int PTHREAD_MUTEX_RECURSIVE

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
cdef double _DUE_SLACK = DUE_SLACK
#: The most a buffer goes back before its deadline in a host's cycle: PipeWire's
#: playback quantum (the power of two nearest 20 ms) is at most 23.2 ms. A cycle that
#: takes more (PipeWire may hand a stream a whole buffer to fill) does not run the guest
#: further ahead of real time.
MAX_LEAD = 0.025
cdef double _MAX_LEAD = MAX_LEAD
#: A period clock this far behind its grid starts afresh rather than catching up.
MAX_CLOCK_DEBT = 1.0
cdef double _MAX_CLOCK_DEBT = MAX_CLOCK_DEBT


cdef double _monotonic() noexcept nogil:
    """time.monotonic(), without Python."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef enum:
    # How a wake-up decides which queued buffers are played (see _complete_played).
    _UNTIMED = 0    # the device's period timer consumed them: what it consumed
    _TIMED = 1      # the deadline passed (and all of it is in the ring)
    _HOST = 2       # the host took all of it, and it is due within the host's cycle


cdef struct Held:
    PyObject* batch      # its ChainBatch: an owned reference, or (slot >= 0) one of the
                         # pool's, which the pool keeps alive
    int slot
    ChainInfo* info
    Segment* segs        # the batch's segments (they never move once it is walked)
    uint64_t size        # sample bytes (the readable part after the header)
    uint64_t done        # of which copied into the ring
    uint64_t end_pos     # ring write position after its last byte, once `queued`
    bint queued
    bint timed           # `due` is set (the clock runs and the buffer is queued)
    double due           # CLOCK_MONOTONIC seconds by which its last frame is played


cdef uint64_t _to_ring(Segment* segs, ChainInfo* info, uint64_t offset, uint64_t n,
                       pcm_ring* ring) noexcept nogil:
    """Copy up to n readable bytes from `offset` of a chain into `ring`, as far as it
    has room; returns the byte count."""
    cdef uint32_t s = info.first_seg
    cdef uint32_t end = s + info.n_read
    cdef uint64_t moved = 0, take, put
    cdef Segment* seg
    while n and s < end:
        seg = &segs[s]
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


cdef void _write_status(Segment* segs, ChainInfo* info, uint32_t status,
                        uint32_t latency) noexcept nogil:
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
        seg = &segs[s]
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


cdef class DeviceLock:
    """The session lock of a device with a realtime path (see the module doc): reentrant
    like threading.RLock, and a pthread mutex that the host's realtime thread only ever
    tries, without the GIL. Whoever holds it (the session handling a request, a worker
    running a callback) may change rings, memory and streams; the realtime path runs
    only while nobody does. `refresh`, if set, is called before the outermost release,
    lock still held: what the realtime path needs of the rings is copied then, so it
    never reads a Python object."""

    cdef pthread_mutex_t mutex
    cdef int depth
    cdef public object refresh

    def __cinit__(self):
        cdef pthread_mutexattr_t attr
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE)
        pthread_mutex_init(&self.mutex, &attr)
        pthread_mutexattr_destroy(&attr)
        self.depth = 0
        self.refresh = None

    def __dealloc__(self):
        pthread_mutex_destroy(&self.mutex)

    def acquire(self, bint blocking=True):
        if pthread_mutex_trylock(&self.mutex) != 0:
            if not blocking:
                return False
            with nogil:
                pthread_mutex_lock(&self.mutex)
        self.depth += 1
        return True

    def release(self):
        # Reentrant: only its holder gets it again at once (then gives that back).
        if pthread_mutex_trylock(&self.mutex) != 0 or self.depth <= 0:
            raise RuntimeError("DeviceLock released by a thread that does not hold it")
        pthread_mutex_unlock(&self.mutex)
        if self.depth == 1 and self.refresh is not None:
            try:
                self.refresh()
            except Exception:
                log.exception("refreshing the realtime path failed")
        self.depth -= 1
        pthread_mutex_unlock(&self.mutex)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


cdef void _host_cycle(void* ctx, pcm_ring* r, size_t n, bint after) noexcept nogil:
    (<PlaybackBuffers>ctx)._cycle(r, n, after)


cdef inline void _to_timespec(double t, timespec* ts) noexcept nogil:
    ts.tv_sec = <long>t
    ts.tv_nsec = <long>((t - ts.tv_sec) * 1e9)
    if ts.tv_nsec >= 1000000000:
        ts.tv_sec += 1
        ts.tv_nsec -= 1000000000


cdef double _next_tick(double* due, double interval, double now) noexcept nogil:
    """When a period clock whose next tick is `due` wakes next, at `now`. On time, at
    `due`. Behind its grid (its thread was descheduled on a loaded host), it catches
    up by ticking twice as often, one tick's worth each: the audio it was late for
    loses no time, and the guest is never handed back more than a tick at once nor
    left less than half a tick to refill (a tick that finds the ring dry ends the
    catching up, see _clock_loop). More than MAX_CLOCK_DEBT behind (the host was
    suspended), the grid starts afresh from `now`."""
    if due[0] >= now:
        return due[0]
    if due[0] < now - _MAX_CLOCK_DEBT:
        due[0] = now + interval
        return due[0]
    return now + interval / 2


cdef void* _clock_main(void* ctx) noexcept nogil:
    (<PlaybackBuffers>ctx)._clock_loop()
    return NULL


cdef class PlaybackBuffers:
    """A FIFO of held tx buffers for one output stream (see the module doc)."""

    cdef Held* items
    cdef Py_ssize_t first, count, cap
    cdef readonly uint64_t held_bytes
    cdef readonly uint32_t stream_id
    cdef bint clock_running
    cdef double bytes_per_second
    cdef double last_due     # the deadline of the last buffer given one
    # -- the realtime path (see the module doc); its fields change under the lock only
    cdef pcm_ring* rt_ring           # the ring whose host runs cycles (NULL: none)
    cdef pthread_mutex_t* guard      # the DeviceLock's mutex
    cdef DeviceLock _guard_owner
    cdef Virtqueue rt_q              # the tx queue while armed, else None
    cdef bint _armed
    cdef bint rt_wake                # the worker was asked to take over this cycle
    cdef bint rt_holding             # the host thread holds the lock (its own field)
    cdef int rt_call_fd              # our dup of the ring's call fd (-1: none)
    cdef int rt_added
    cdef uint64_t rt_limit
    cdef double rt_lead              # the host's last cycle, in seconds
    cdef list _pool                  # ChainBatch objects the realtime path pops into
    cdef PyObject** pool
    cdef int* free_slots
    cdef int* slot_gen               # the pins generation of each pool batch
    cdef int n_free, pool_size, gen
    cdef object _pins                # the queue's pins of generation `gen`
    cdef PyObject** grave            # owned batches the realtime path let go of, for
    cdef int n_grave, grave_cap      # the next Python call to release
    cdef readonly uint64_t rt_cycles
    cdef readonly uint64_t rt_busy
    # -- the period clock (a thread of its own; see clock_start)
    cdef pthread_t clock_thread
    cdef bint clock_alive
    cdef bint clock_quit             # under clock_mutex
    cdef pthread_mutex_t clock_mutex
    cdef pthread_cond_t clock_cond
    cdef double clock_next
    cdef double clock_interval
    cdef size_t clock_bytes
    cdef readonly uint64_t clock_behind   # wake-ups that found the clock behind its grid
    cdef readonly uint64_t clock_starved  # bytes the clock played with none in the ring
    cdef bint clock_short                 # the last tick found less than its bytes

    def __cinit__(self, uint32_t stream_id):
        self.items = NULL
        self.first = self.count = self.cap = 0
        self.held_bytes = 0
        self.stream_id = stream_id
        self.clock_running = False
        self.bytes_per_second = 0.0
        self.last_due = 0.0
        self.rt_ring = NULL
        self.guard = NULL
        self._armed = False
        self.rt_wake = False
        self.rt_holding = False
        self.rt_call_fd = -1
        self.rt_added = 0
        self.rt_limit = 0
        self.rt_lead = 0.0
        self.pool = NULL
        self.free_slots = NULL
        self.slot_gen = NULL
        self.n_free = self.pool_size = self.gen = 0
        self.grave = NULL
        self.n_grave = self.grave_cap = 0
        self.rt_cycles = self.rt_busy = 0
        cdef pthread_condattr_t cattr
        pthread_condattr_init(&cattr)
        pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.clock_cond, &cattr)
        pthread_condattr_destroy(&cattr)
        pthread_mutex_init(&self.clock_mutex, NULL)
        self.clock_alive = False
        self.clock_quit = False

    def __dealloc__(self):
        # A running clock holds a reference: it is stopped by now.
        pthread_cond_destroy(&self.clock_cond)
        pthread_mutex_destroy(&self.clock_mutex)
        while self.count:
            self._drop_front(False)
        self._bury()
        free(self.items)
        free(self.pool)
        free(self.free_slots)
        free(self.slot_gen)
        free(self.grave)
        if self.rt_call_fd >= 0:
            close(self.rt_call_fd)

    def __len__(self):
        return self.count

    # -- the FIFO ----------------------------------------------------------------------

    cdef inline Held* _at(self, Py_ssize_t i) noexcept nogil:
        return &self.items[(self.first + i) % self.cap]

    cdef int _grow(self) noexcept nogil:
        cdef Py_ssize_t cap = self.cap * 2 if self.cap else 16, i
        cdef Held* grown = <Held*>malloc(cap * sizeof(Held))
        if grown == NULL:
            return -1
        for i in range(self.count):
            grown[i] = self._at(i)[0]
        free(self.items)
        self.items = grown
        self.first = 0
        self.cap = cap
        return 0

    cdef Held* _push_held(self, PyObject* batch, int slot, ChainInfo* info) noexcept nogil:
        """Append a buffer (the caller owns the reference it hands over); NULL if the
        FIFO cannot grow."""
        cdef Held* h
        if self.count == self.cap and self._grow() < 0:
            return NULL
        h = &self.items[(self.first + self.count) % self.cap]
        h.batch = batch
        h.slot = slot
        h.info = info
        h.segs = (<ChainBatch>batch).segs
        h.size = info.read_len - _XFER_SIZE
        h.done = 0
        h.end_pos = 0
        h.queued = False
        h.timed = False
        h.due = 0.0
        self.count += 1
        self.held_bytes += h.size
        return h

    cdef int _push(self, ChainBatch batch, ChainInfo* info) except -1:
        Py_INCREF(batch)
        if self._push_held(<PyObject*>batch, -1, info) == NULL:
            Py_XDECREF(<PyObject*>batch)
            raise MemoryError()
        return 0

    cdef void _drop_front(self, bint rt) noexcept nogil:
        """Forget the first buffer. Its batch goes back to the pool, or is released:
        by the host thread (`rt`) only later, by a Python call (it has no GIL)."""
        cdef Held* h = &self.items[self.first]
        cdef PyObject* batch = h.batch
        cdef PyObject** grown
        h.batch = NULL
        self.held_bytes -= h.size
        self.first = (self.first + 1) % self.cap
        self.count -= 1
        if h.slot >= 0:
            self.free_slots[self.n_free] = h.slot
            self.n_free += 1
        elif not rt:
            with gil:
                Py_XDECREF(batch)
        else:
            if self.n_grave == self.grave_cap:
                grown = <PyObject**>realloc(
                    self.grave, (self.grave_cap * 2 + 16) * sizeof(PyObject*))
                if grown == NULL:
                    return  # leaked rather than released without the GIL
                self.grave = grown
                self.grave_cap = self.grave_cap * 2 + 16
            self.grave[self.n_grave] = batch
            self.n_grave += 1

    cdef void _bury(self) noexcept:
        """Release the batches the host thread let go of."""
        while self.n_grave:
            self.n_grave -= 1
            Py_XDECREF(self.grave[self.n_grave])

    cdef uint32_t _latency(self, Held* h, int mode, double now) noexcept nogil:
        """The pcm_status latency of a buffer completing at `now`: the bytes of it still
        to be heard (its deadline is ahead by at most a host's cycle), 0 for what the
        period clock played. Not the audio queued behind it: the guest's pointer still
        counts that as not played, and Linux adds this figure to it for
        snd_pcm_delay()."""
        if mode == _UNTIMED or not h.timed or h.due <= now:
            return 0
        return <uint32_t>((h.due - now) * self.bytes_per_second)

    cdef void _complete_front(self, _Used used, uint32_t latency) noexcept:
        cdef Held* h = &self.items[self.first]
        _write_status(h.segs, h.info, _S_OK, latency)
        used.add(h.info)
        self._drop_front(False)

    # -- the data path -----------------------------------------------------------------

    cdef void _time(self, Held* h, double now) noexcept nogil:
        """Give a queued buffer its deadline: it plays after the one before it, or from
        `now` if the stream ran dry before it came."""
        cdef double begin = self.last_due if self.last_due > now else now
        h.due = begin + h.size / self.bytes_per_second
        h.timed = True
        self.last_due = h.due

    cdef void _feed(self, pcm_ring* ring) noexcept nogil:
        cdef Py_ssize_t i
        cdef Held* h
        cdef double now = 0.0
        for i in range(self.count):
            h = self._at(i)
            if h.queued:
                continue
            if h.done < h.size:
                h.done += _to_ring(h.segs, h.info, _XFER_SIZE + h.done, h.size - h.done, ring)
                if h.done < h.size:
                    return  # the ring is full
            h.end_pos = ring_write_pos(ring)
            h.queued = True
            if self.clock_running:
                if now == 0.0:
                    now = _monotonic()
                self._time(h, now)

    cdef bint _played(self, Held* h, int mode, uint64_t read_pos, double now) noexcept nogil:
        """Whether a buffer is played by the rule of `mode`; `now` already has the
        slack (and, for _HOST, the host's cycle) added."""
        if not h.queued:
            return False
        if mode == _UNTIMED:
            return h.end_pos <= read_pos
        if not h.timed or h.due > now:
            return False
        return mode == _TIMED or h.end_pos <= read_pos

    cdef double _complete_played(self, _Used used, pcm_ring* ring, int mode) noexcept:
        """Return the played buffers (see _played); returns the deadline of the first
        one still to come if only its deadline holds it back and `mode` is _TIMED (0:
        none, or the host's next notification or cycle decides)."""
        cdef uint64_t read_pos = ring_read_pos(ring)
        cdef double real = _monotonic()
        cdef double now = real + DUE_SLACK
        cdef Held* h
        if mode == _HOST:
            now += self.rt_lead
        while self.count:
            h = &self.items[self.first]
            if not self._played(h, mode, read_pos, now):
                if mode == _TIMED and h.queued and h.timed:
                    return h.due
                return 0.0
            self._complete_front(used, self._latency(h, mode, real))
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

    # -- the realtime path: the host thread, lock held, no GIL -------------------------

    cdef void _cycle(self, pcm_ring* r, size_t n, bint after) noexcept nogil:
        """One host cycle of n bytes. Before the host takes them: take what the guest
        posted and copy it into the ring. After: return what the host took and is due
        within this cycle, refill the ring, interrupt the guest once. Whatever is not
        plainly this stream's, or a ring in trouble, is left to the worker (woken
        through the ring's notification), which takes over until its next call."""
        if not after:
            if self.guard == NULL or r != self.rt_ring:
                return
            if pthread_mutex_trylock(self.guard) != 0:
                self.rt_busy += 1
                notify(r)  # the worker does this cycle's work once the lock is free
                return
            if not self._armed or self.rt_wake or r != self.rt_ring:
                pthread_mutex_unlock(self.guard)
                return
            self.rt_holding = True
            self._rt_take()
            self._feed(r)
            return
        if not self.rt_holding:
            return
        self.rt_holding = False
        self.rt_lead = n / self.bytes_per_second
        if self.rt_lead > _MAX_LEAD:
            self.rt_lead = _MAX_LEAD
        self._rt_complete(r, _HOST)
        self._feed(r)
        self._rt_signal()
        self.rt_cycles += 1
        if self.rt_wake:
            notify(r)
        pthread_mutex_unlock(self.guard)

    cdef void _clock_loop(self) noexcept nogil:
        """The period clock's thread: one tick every `clock_interval` on a grid from its
        anchor (see clock_start)."""
        cdef timespec ts
        cdef double now, wake = self.clock_next
        pthread_mutex_lock(&self.clock_mutex)
        while not self.clock_quit:
            _to_timespec(wake, &ts)
            pthread_cond_timedwait(&self.clock_cond, &self.clock_mutex, &ts)
            if self.clock_quit:
                break
            now = _monotonic()
            if now < wake:
                continue  # woken early (spuriously)
            pthread_mutex_unlock(&self.clock_mutex)
            if self._tick():
                self.clock_next += self.clock_interval
                if self.clock_short and self.clock_next < now:
                    # Behind, and the ring ran dry: what comes next arrived late and
                    # plays from now, not at twice the pace (it cannot play before
                    # it came). Only audio the clock itself was late for is caught up.
                    self.clock_next = now + self.clock_interval
                wake = _next_tick(&self.clock_next, self.clock_interval, now)
                if wake != self.clock_next:
                    self.clock_behind += 1
            else:
                wake = _monotonic() + 0.0005  # the lock is busy: again in a moment
            pthread_mutex_lock(&self.clock_mutex)
        pthread_mutex_unlock(&self.clock_mutex)

    cdef bint _tick(self) noexcept nogil:
        """One period clock tick: like a host cycle of `clock_bytes`, with those bytes
        discarded (played into nothing) from the ring in between (what the ring lacks
        counts as `clock_starved`). False if the lock was busy (nothing done)."""
        cdef pcm_ring* r = self.rt_ring
        cdef size_t n = self.clock_bytes
        if self.guard == NULL or pthread_mutex_trylock(self.guard) != 0:
            self.rt_busy += 1
            return False
        r = self.rt_ring
        if r != NULL:
            if self._armed and not self.rt_wake:
                self._rt_take()
                self._feed(r)
            n -= ring_discard(r, n)
            self.clock_starved += n
            self.clock_short = n != 0
            if self._armed and not self.rt_wake:
                self._rt_complete(r, _UNTIMED)  # what the clock played, as its timer did
                self._feed(r)
                self._rt_signal()
                self.rt_cycles += 1
            else:
                notify(r)  # the worker takes what it played
        pthread_mutex_unlock(self.guard)
        return True

    cdef void _rt_take(self) noexcept nogil:
        """Pop the guest's new buffers while each is plainly this stream's and fits."""
        cdef uint16_t size, n, head
        cdef int slot
        cdef PyObject* batch
        cdef ChainInfo* info
        cdef uint8_t header[_XFER_SIZE]
        cdef uint32_t stream_id
        if self.rt_q.desc == NULL or self.rt_q._broken:
            self.rt_wake = True
            return
        size = self.rt_q._size
        if not self.rt_q.event_idx:  # kicks stay off while we take buffers ourselves
            vq_store16(&self.rt_q.used[0], vq_load16(&self.rt_q.used[0]) | USED_F_NO_NOTIFY)
        n = <uint16_t>(vq_load_acquire16(&self.rt_q.avail[1]) - self.rt_q.next_avail)
        if n > size:
            self.rt_wake = True  # the guest broke the ring: the Python pop says so
            return
        while n:
            head = vq_load16(&self.rt_q.avail[2 + self.rt_q.next_avail % size])
            if head >= size or self.n_free == 0:
                self.rt_wake = True
                return
            slot = self.free_slots[self.n_free - 1]
            if self.slot_gen[slot] != self.gen:
                self.rt_wake = True  # its pins are an older memory table's: refresh first
                return
            batch = self.pool[slot]
            (<ChainBatch>batch).count = 0
            (<ChainBatch>batch).seg_count = 0
            if self.rt_q._walk(<ChainBatch>batch, head) < 0:
                self.rt_wake = True
                return
            info = &(<ChainBatch>batch).chains[0]
            if (
                info.error != 0
                or info.read_len < _XFER_SIZE
                or info.write_len < _STATUS_SIZE
                or chain_read(<ChainBatch>batch, info, 0, header, _XFER_SIZE) != _XFER_SIZE
            ):
                self.rt_wake = True
                return
            stream_id = (header[0] | header[1] << 8 | header[2] << 16
                         | <uint32_t>header[3] << 24)
            if (stream_id != self.stream_id
                    or self.held_bytes + info.read_len - _XFER_SIZE > self.rt_limit):
                self.rt_wake = True
                return
            if self._push_held(batch, slot, info) == NULL:
                self.rt_wake = True
                return
            self.n_free -= 1
            self.rt_q.next_avail = <uint16_t>(self.rt_q.next_avail + 1)
            n -= 1

    cdef void _rt_complete(self, pcm_ring* r, int mode) noexcept nogil:
        cdef uint64_t read_pos = ring_read_pos(r)
        cdef double real = _monotonic()
        cdef double now = real + _DUE_SLACK + self.rt_lead
        cdef Held* h
        while self.count:
            h = &self.items[self.first]
            if not self._played(h, mode, read_pos, now):
                return
            _write_status(h.segs, h.info, _S_OK, self._latency(h, mode, real))
            if self.rt_q.push_used(h.info.head, _STATUS_SIZE) < 0:
                self.rt_wake = True  # lost with a broken ring; the worker reports it
            else:
                self.rt_added += 1
            self._drop_front(True)

    cdef void _rt_signal(self) noexcept nogil:
        cdef uint64_t one = 1
        if not self.rt_added:
            return
        self.rt_added = 0
        if self.rt_call_fd >= 0 and self.rt_q.notify_due():
            write(self.rt_call_fd, &one, 8)  # EAGAIN: an interrupt is pending anyway

    # -- Python API --------------------------------------------------------------------

    def append(self, DescriptorChain chain not None):
        """Hold a buffer the device has checked (header, status room, stream, size)."""
        if chain.info == NULL or chain.info.error or chain.info.read_len < _XFER_SIZE \
                or chain.info.write_len < _STATUS_SIZE:
            raise ValueError("not a usable playback buffer")
        self._bury()
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
        self.rt_lead = 0.0
        for i in range(self.count):
            h = self._at(i)
            if h.queued:
                self._time(h, now)

    def stop_clock(self):
        """STOP (or pause): nothing plays and nothing is due until the next START."""
        cdef Py_ssize_t i
        self.clock_running = False
        self._armed = False
        for i in range(self.count):
            self._at(i).timed = False

    def complete_played(self, vring, PcmRing ring not None):
        """Return the buffers in the ring whose deadline has passed (latency 0:
        nothing of them is still to be heard); interrupt the guest once if it asked for it.
        Returns the next deadline to wake up for (0: none)."""
        cdef _Used used = _used_of(vring)
        cdef double due
        self._bury()
        due = self._complete_played(used, &ring.ring, _TIMED)
        used.signal()
        return due

    def step(self, vring, PcmRing ring not None, route, uint64_t limit, bint take,
             size_t discard=0):
        """One wake-up of a playing stream: reset the ring's notification; if `take`,
        pop what the guest posted (`vring.poll()`), holding this stream's buffers while
        at most `limit` bytes are held and handing any other to `route`, and queue them
        in the ring; drop `discard` bytes from the ring (played by the device's period
        timer, whose pace is the clock: then what it played goes back at once);
        return what was played and is due (a ring whose host runs cycles: what the host
        took and is due within its cycle); refill the ring; interrupt the guest once if
        it asked for it. Returns the next deadline to wake up for (0: none, or the
        host's cycles decide). (The order of stream_io's Python path, so latencies are
        the same.) The realtime path, if it handed over, takes over again after."""
        cdef _Used used = _used_of(vring)
        cdef double due
        cdef int mode
        self._bury()
        drain_fd(&ring.ring)
        if take:
            self._take(vring, limit, route)
            self._feed(&ring.ring)  # as it arrives: completions count it as latency
        if discard:
            ring_discard(&ring.ring, discard)
            mode = _UNTIMED
        elif &ring.ring == self.rt_ring:
            # A cycle handed over: the period clock's rule, or the host's.
            mode = _UNTIMED if self.clock_alive else _HOST
        else:
            mode = _TIMED
        due = self._complete_played(used, &ring.ring, mode)
        self._feed(&ring.ring)
        used.signal()
        self.rt_wake = False
        return due

    def flush(self, vring, uint32_t latency):
        """Return every held buffer now, played or not."""
        cdef _Used used = _used_of(vring)
        self._bury()
        while self.count:
            self._complete_front(used, latency)
        used.signal()

    def clear(self):
        """Forget every held buffer (the guest's rings are gone)."""
        while self.count:
            self._drop_front(False)
        self._bury()

    # -- the realtime path: set-up, under the lock -------------------------------------

    def attach_host(self, PcmRing ring not None, DeviceLock lock not None, int pool_size):
        """`ring`'s host runs cycles (it calls host_cycle around each): from now on this
        stream's buffers are taken, fed and returned by those calls, without the GIL,
        while `rt_configure` says so, with at most `pool_size` (the queue's size) taken
        there at once. Call before the host stream exists, holding `lock`."""
        cdef int i
        cdef ChainBatch batch
        if pool_size <= 0:
            raise ValueError("pool_size must be positive")
        self._armed = False
        if pool_size != self.pool_size:
            if self.count:
                raise RuntimeError("cannot resize the pool while buffers are held")
            free(self.pool)
            free(self.free_slots)
            free(self.slot_gen)
            self.pool = NULL
            self.free_slots = NULL
            self.slot_gen = NULL
            self.pool_size = self.n_free = 0
            self._pool = []
            self.pool = <PyObject**>malloc(pool_size * sizeof(PyObject*))
            self.free_slots = <int*>malloc(pool_size * sizeof(int))
            self.slot_gen = <int*>malloc(pool_size * sizeof(int))
            if self.pool == NULL or self.free_slots == NULL or self.slot_gen == NULL:
                raise MemoryError()
            for i in range(pool_size):
                batch = ChainBatch.__new__(ChainBatch)
                batch.chains = <ChainInfo*>malloc(sizeof(ChainInfo))
                if batch.chains == NULL:
                    raise MemoryError()
                self._pool.append(batch)
                self.pool[i] = <PyObject*>batch
                self.free_slots[i] = pool_size - 1 - i
                self.slot_gen[i] = -1
            self.pool_size = self.n_free = pool_size
        while self.count < pool_size and self.cap < pool_size:
            if self._grow() < 0:
                raise MemoryError()
        ring.ring.cycle_ctx = <void*>self
        ring.ring.host_cycle = <void*>_host_cycle
        ring._cycle_owner = self
        self.rt_ring = &ring.ring
        self._guard_owner = lock
        self.guard = &lock.mutex

    def detach_host(self):
        """The ring is being dropped: its host's cycles no longer reach this stream."""
        self._armed = False
        self.rt_ring = NULL
        self.rt_q = None

    def rt_configure(self, bint armed, vring=None, uint64_t limit=0):
        """Arm the realtime path on `vring` (the tx ring: started, enabled, its call
        fd as it is now) with at most `limit` bytes held, or disarm it. Called with the
        lock held whenever rings or the stream may have changed (DeviceLock.refresh)."""
        cdef Virtqueue queue
        cdef int i, slot
        self._bury()
        if self.rt_call_fd >= 0:
            close(self.rt_call_fd)
            self.rt_call_fd = -1
        if not armed or vring is None or self.rt_ring == NULL or not self.clock_running:
            self._armed = False
            self.rt_q = None
            return
        queue = vring.queue
        call_fd = vring.call_fd
        if call_fd is not None:
            # Our own copy: the session may close or replace the ring's at any request.
            self.rt_call_fd = os.dup(call_fd)
        if queue.pins is not self._pins:
            self._pins = queue.pins
            self.gen += 1
        for i in range(self.n_free):
            slot = self.free_slots[i]
            if self.slot_gen[slot] != self.gen:
                (<ChainBatch>self.pool[slot]).pins = queue.pins
                self.slot_gen[slot] = self.gen
        self.rt_q = queue
        self.rt_limit = limit
        self._armed = True

    def clock_start(self, double anchor, double interval, size_t nbytes):
        """Run the period clock: every `interval` seconds from `anchor` (CLOCK_MONOTONIC),
        `nbytes` of the ring are played into nothing and the buffers they held go back,
        on a thread of its own that takes the lock (tries it) but never the GIL: the
        null backend's clock, or a disabled output's. Needs attach_host first. What it
        cannot do alone (see _cycle) it hands to the worker through the ring's
        notification."""
        cdef int rc
        if self.rt_ring == NULL:
            raise RuntimeError("the period clock needs attach_host first")
        if interval <= 0 or nbytes == 0:
            raise ValueError("the period clock needs a positive interval and size")
        self.clock_stop()
        self.clock_next = anchor + interval
        self.clock_interval = interval
        self.clock_bytes = nbytes
        self.clock_behind = self.clock_starved = 0
        self.clock_short = False
        self.clock_quit = False
        Py_INCREF(self)  # the thread's
        rc = pthread_create(&self.clock_thread, NULL, _clock_main, <void*>self)
        if rc != 0:
            Py_XDECREF(<PyObject*>self)
            raise OSError(rc, "cannot start the period clock thread")
        self.clock_alive = True

    def clock_stop(self):
        """Stop the period clock (and wait for its thread)."""
        if not self.clock_alive:
            return
        with nogil:
            pthread_mutex_lock(&self.clock_mutex)
            self.clock_quit = True
            pthread_cond_signal(&self.clock_cond)
            pthread_mutex_unlock(&self.clock_mutex)
            pthread_join(self.clock_thread, NULL)
        self.clock_alive = False
        self._bury()
        Py_XDECREF(<PyObject*>self)

    @property
    def period_clock_running(self):
        return self.clock_alive

    @property
    def rt_armed(self):
        """Whether the host's cycles take, feed and return this stream's buffers."""
        return self._armed
