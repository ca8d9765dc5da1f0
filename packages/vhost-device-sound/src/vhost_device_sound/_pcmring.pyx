# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A byte ring between the device and a host audio thread, and the switch that gates it.

Playback: the worker writes the guest's samples in; the host side (PipeWire's realtime
callback, the ALSA thread) consumes them, or, while the output is disabled or the backend
has no clock of its own, the worker's period timer discards them. Capture: the host side
produces samples in; the worker moves them into the guest's buffers.

The realtime entry points (`consume_rt`, `produce_rt`) are C functions that never take
the GIL and never block: the consumer side is serialised by a mutex that the realtime
thread only ever *tries*; if the worker holds it for a moment, that period is silence.
Both check the direction's Switch on every call, so a disabled direction stops moving
host audio at the next period, whatever the other threads are doing.
"""

import os

from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.unistd cimport close, read, write

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_CLOEXEC
    int EFD_NONBLOCK

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t ring_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void ring_store(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline int gate_load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void gate_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    uint64_t ring_load(const uint64_t* p) noexcept nogil
    void ring_store(uint64_t* p, uint64_t v) noexcept nogil
    int gate_load(const int* p) noexcept nogil
    void gate_store(int* p, int v) noexcept nogil


cdef class Switch:
    """One direction's enable flag: an atomic int that C code reads without the GIL."""

    def __cinit__(self, bint on=False):
        gate_store(&self.on, on)

    @property
    def enabled(self):
        return bool(gate_load(&self.on))

    @enabled.setter
    def enabled(self, bint value):
        gate_store(&self.on, value)

    def __repr__(self):
        return f"Switch(enabled={self.enabled})"


cdef inline bint gate_open(pcm_ring* r) noexcept nogil:
    return gate_load(r.gate) != 0


cdef inline void _copy_out(pcm_ring* r, uint64_t pos, uint8_t* dst, size_t n) noexcept nogil:
    cdef uint64_t at = pos % r.capacity
    cdef size_t first = n if n < r.capacity - at else <size_t>(r.capacity - at)
    memcpy(dst, r.data + at, first)
    if n > first:
        memcpy(dst + first, r.data, n - first)


cdef inline void _copy_in(pcm_ring* r, uint64_t pos, const uint8_t* src, size_t n) noexcept nogil:
    cdef uint64_t at = pos % r.capacity
    cdef size_t first = n if n < r.capacity - at else <size_t>(r.capacity - at)
    memcpy(r.data + at, src, first)
    if n > first:
        memcpy(r.data, src + first, n - first)


cdef void notify(pcm_ring* r) noexcept nogil:
    cdef uint64_t one = 1
    write(r.notify_fd, &one, 8)  # EAGAIN (counter saturated) needs no second wake-up


cdef inline void _moved(pcm_ring* r, uint64_t n, bint urgent) noexcept nogil:
    """Wake the worker once `notify_every` bytes have moved since it last was, or now
    if `urgent` (a playback ring that needs refilling, a capture ring that is full).
    Host side only, one thread at a time: no atomics needed."""
    r.moved += n
    if urgent or r.moved >= r.notify_every:
        r.moved = 0
        notify(r)


cdef size_t _consume(pcm_ring* r, uint8_t* dst, size_t n) noexcept nogil:
    """Move up to n bytes out (dst NULL: discard them); the read lock is held."""
    cdef uint64_t rpos = ring_load(&r.read_pos)
    cdef uint64_t avail = ring_load(&r.write_pos) - rpos
    if n > avail:
        n = <size_t>avail
    if n and dst != NULL:
        _copy_out(r, rpos, dst, n)
    ring_store(&r.read_pos, rpos + n)
    return n


cdef size_t _produce(pcm_ring* r, const uint8_t* src, size_t n) noexcept nogil:
    """Move up to n bytes in; single producer."""
    cdef uint64_t wpos = ring_load(&r.write_pos)
    cdef uint64_t room = r.capacity - (wpos - ring_load(&r.read_pos))
    if n > room:
        n = <size_t>room
    if n:
        _copy_in(r, wpos, src, n)
    ring_store(&r.write_pos, wpos + n)
    return n


cdef size_t ring_produce(pcm_ring* r, const uint8_t* src, size_t n) noexcept nogil:
    """The worker as producer (playback), ungated like PcmRing.write."""
    return _produce(r, src, n)


cdef size_t ring_discard(pcm_ring* r, size_t n) noexcept nogil:
    """The worker as consumer: drop up to n queued bytes, like PcmRing.discard."""
    cdef size_t got
    pthread_mutex_lock(&r.read_lock)
    got = _consume(r, NULL, n)
    pthread_mutex_unlock(&r.read_lock)
    return got


cdef uint64_t ring_fill(pcm_ring* r) noexcept nogil:
    return ring_load(&r.write_pos) - ring_load(&r.read_pos)


cdef uint64_t ring_read_pos(pcm_ring* r) noexcept nogil:
    return ring_load(&r.read_pos)


cdef uint64_t ring_write_pos(pcm_ring* r) noexcept nogil:
    return ring_load(&r.write_pos)


cdef uint64_t drain_fd(pcm_ring* r) noexcept nogil:
    """Reset the notification eventfd; returns how many notifications came (0 if
    none: it is non-blocking)."""
    cdef uint64_t count = 0
    if read(r.notify_fd, &count, 8) != 8:
        return 0
    return count


cdef size_t consume_rt(pcm_ring* r, uint8_t* dst, size_t n) noexcept nogil:
    """Realtime consumer: copy up to n queued bytes to dst and notify the worker.

    Returns 0 without consuming when the direction is disabled or the worker holds the
    read lock this instant; the caller fills what it did not get with silence. The
    worker is notified once `notify_every` bytes have gone, or at once when what is
    left could not feed two more calls like this one: while a stream runs it takes new
    guest buffers only when woken (the guest's kicks are off), so it must come while a
    buffer the guest re-posts late can still make it in time."""
    cdef size_t got
    if not gate_open(r):
        return 0
    if pthread_mutex_trylock(&r.read_lock) != 0:
        return 0
    got = _consume(r, dst, n)
    pthread_mutex_unlock(&r.read_lock)
    if r.host_cycle == NULL:  # with a cycle hook, the hook wakes the worker if need be
        _moved(r, got, ring_load(&r.write_pos) - ring_load(&r.read_pos) < 2 * n)
    return got


cdef void host_cycle(pcm_ring* r, size_t n, bint after) noexcept nogil:
    """Run the ring's host cycle hook, if it has one: a host thread calls this before
    it takes its cycle's n bytes (after=0) and once it has (after=1)."""
    if r.host_cycle != NULL:
        (<host_cycle_fn>r.host_cycle)(r.cycle_ctx, r, n, after)


cdef size_t produce_rt(pcm_ring* r, const uint8_t* src, size_t n) noexcept nogil:
    """Realtime producer: queue up to n captured bytes and notify the worker once
    `notify_every` bytes have come (at once if the ring is full). Nothing is queued
    while the direction is disabled: host audio never enters the ring then."""
    cdef size_t put
    if not gate_open(r):
        return 0
    put = _produce(r, src, n)
    _moved(r, put, put < n)
    return put


cdef class PcmRing:
    """A bounded byte FIFO of `capacity` bytes gated by `switch` (see module doc)."""

    def __cinit__(self, uint64_t capacity, Switch switch not None):
        if capacity == 0:
            raise ValueError("ring capacity must be positive")
        self.ring.data = <uint8_t*>malloc(capacity)
        if self.ring.data == NULL:
            raise MemoryError()
        self.ring.capacity = capacity
        self.ring.read_pos = 0
        self.ring.write_pos = 0
        self.ring.notify_every = 0
        self.ring.moved = 0
        self.ring.host_cycle = NULL
        self.ring.cycle_ctx = NULL
        self._switch = switch
        self.ring.gate = &switch.on
        self.ring.notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self.ring.notify_fd < 0:
            free(self.ring.data)
            self.ring.data = NULL
            raise OSError("eventfd failed")
        pthread_mutex_init(&self.ring.read_lock, NULL)

    def __dealloc__(self):
        if self.ring.data != NULL:
            pthread_mutex_destroy(&self.ring.read_lock)
            close(self.ring.notify_fd)
            free(self.ring.data)
            self.ring.data = NULL

    @property
    def capacity(self):
        return self.ring.capacity

    @property
    def switch(self):
        return self._switch

    @property
    def notify_every(self):
        """Bytes the host side moves between two notifications of the worker (0: every
        call). Set before the host side starts: a stream's host period."""
        return self.ring.notify_every

    @notify_every.setter
    def notify_every(self, uint64_t value):
        self.ring.notify_every = value

    @property
    def notify_fd(self):
        """Readable (eventfd) after the host side moved data; the worker watches it."""
        return self.ring.notify_fd

    @property
    def read_pos(self):
        return ring_load(&self.ring.read_pos)

    @property
    def write_pos(self):
        return ring_load(&self.ring.write_pos)

    @property
    def fill(self):
        """Bytes queued and not yet consumed."""
        return ring_load(&self.ring.write_pos) - ring_load(&self.ring.read_pos)

    @property
    def room(self):
        return self.ring.capacity - self.fill

    def write(self, data):
        """Producer (the worker, for playback): queue what fits of `data`; returns the
        byte count. Not gated: the worker decides what a disabled direction gets."""
        cdef const uint8_t[::1] src = data
        cdef size_t n = src.shape[0], put
        if n == 0:
            return 0
        with nogil:
            put = _produce(&self.ring, &src[0], n)
        return put

    def read_into(self, buffer):
        """Consumer (the worker, for capture): move up to len(buffer) bytes out."""
        cdef uint8_t[::1] dst = buffer
        cdef size_t n = dst.shape[0], got
        if n == 0:
            return 0
        with nogil:
            pthread_mutex_lock(&self.ring.read_lock)
            got = _consume(&self.ring, &dst[0], n)
            pthread_mutex_unlock(&self.ring.read_lock)
        return got

    def discard(self, size_t n):
        """Consumer: drop up to n queued bytes (a disabled output played by the clock,
        stale capture); returns the byte count."""
        cdef size_t got
        with nogil:
            got = ring_discard(&self.ring, n)
        return got

    def clear(self):
        """Drop everything queued; returns the byte count."""
        return self.discard(self.ring.capacity)

    def consume_into(self, buffer):
        """A host thread written in Python (ALSA) as consumer: like the realtime path
        (gated by the switch, notifying as `consume_rt` does), but it may wait for the
        lock. Returns bytes copied; the caller plays silence for the rest."""
        cdef uint8_t[::1] dst = buffer
        cdef size_t n = dst.shape[0], got = 0
        if n == 0:
            return 0
        with nogil:
            if gate_open(&self.ring):
                pthread_mutex_lock(&self.ring.read_lock)
                got = _consume(&self.ring, &dst[0], n)
                pthread_mutex_unlock(&self.ring.read_lock)
                _moved(
                    &self.ring,
                    got,
                    ring_load(&self.ring.write_pos) - ring_load(&self.ring.read_pos) < 2 * n,
                )
        return got

    def produce(self, data):
        """A host thread written in Python (ALSA) as producer: gated like produce_rt."""
        cdef const uint8_t[::1] src = data
        cdef size_t n = src.shape[0], put = 0
        if n == 0:
            return 0
        with nogil:
            put = produce_rt(&self.ring, &src[0], n)
        return put

    def drain_notifications(self):
        """Reset the eventfd after a wake-up; returns how many notifications came."""
        cdef uint64_t count = 0
        try:
            count = os.eventfd_read(self.ring.notify_fd)
        except BlockingIOError:
            pass
        return count


# -- software gain ------------------------------------------------------------------------

cdef extern from *:
    """
    #include <stdint.h>
    static inline int32_t clamp_i32(int64_t v, int64_t lo, int64_t hi) {
        return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
    }
    """
    int clamp_i32(long long v, long long lo, long long hi) noexcept nogil

from libc.stdint cimport int16_t, int32_t, int64_t

# VIRTIO_SND_PCM_FMT_* values scale_samples understands.
cdef enum:
    _FMT_U8 = 4
    _FMT_S16 = 5
    _FMT_S24 = 15
    _FMT_S32 = 17
    _FMT_FLOAT = 19


def scale_samples(buffer, int fmt, double gain):
    """Multiply every sample of `buffer` (little-endian, in place) by `gain` in 0..1,
    for backends with no mixer of their own. Formats: U8, S16, S24 (in 32 bits), S32,
    FLOAT; anything else raises ValueError. gain 0 gives exact silence."""
    cdef uint8_t[::1] data = buffer
    cdef Py_ssize_t n = data.shape[0], i
    cdef int64_t g = <int64_t>(gain * 65536.0 + 0.5)
    cdef float fg = <float>gain
    if not 0.0 <= gain <= 1.0:
        raise ValueError(f"gain {gain} is outside 0..1")
    if fmt not in (_FMT_U8, _FMT_S16, _FMT_S24, _FMT_S32, _FMT_FLOAT):
        raise ValueError(f"no software gain for sample format {fmt}")
    if n == 0 or g == 65536:
        return
    with nogil:
        if fmt == _FMT_U8:
            for i in range(n):
                data[i] = <uint8_t>(128 + (((<int64_t>data[i] - 128) * g) >> 16))
        elif fmt == _FMT_S16:
            for i in range(n // 2):
                (<int16_t*>&data[0])[i] = <int16_t>(((<int16_t*>&data[0])[i] * g) >> 16)
        elif fmt == _FMT_S24:
            for i in range(n // 4):
                (<int32_t*>&data[0])[i] = clamp_i32(
                    ((<int32_t*>&data[0])[i] * g) >> 16, -8388608, 8388607)
        elif fmt == _FMT_S32:
            for i in range(n // 4):
                (<int32_t*>&data[0])[i] = <int32_t>(((<int32_t*>&data[0])[i] * g) >> 16)
        else:
            for i in range(n // 4):
                (<float*>&data[0])[i] = (<float*>&data[0])[i] * fg
