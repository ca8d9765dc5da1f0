# The PCM ring shared by the device's worker thread and a host audio thread (the
# PipeWire realtime callback, the ALSA thread). C-level entry points never take the GIL.
from libc.stdint cimport uint8_t, uint64_t

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t*, void*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_trylock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)

cdef struct pcm_ring:
    uint8_t* data
    uint64_t capacity
    uint64_t read_pos      # bytes consumed since creation (atomic)
    uint64_t write_pos     # bytes produced since creation (atomic)
    int* gate              # the direction's switch: 0 = disabled (atomic)
    int notify_fd          # eventfd written after the host side moved data
    uint64_t notify_every  # ... once this many bytes moved (0: after every call)
    uint64_t moved         # bytes moved since the last notification (host side only)
    pthread_mutex_t read_lock
    # The host cycle hook (host_cycle_fn, or NULL): the playback buffers' realtime path,
    # run by the host thread around each cycle; set before the host stream exists.
    void* host_cycle
    void* cycle_ctx

# hook(ctx, ring, bytes the host takes this cycle, after: 0 before it takes them, 1 after)
ctypedef void (*host_cycle_fn)(void* ctx, pcm_ring* r, size_t n, bint after) noexcept nogil

cdef class Switch:
    cdef int on

cdef class PcmRing:
    cdef pcm_ring ring
    cdef Switch _switch
    cdef object _cycle_owner       # keeps cycle_ctx alive while the ring is

cdef void host_cycle(pcm_ring* r, size_t n, bint after) noexcept nogil

cdef bint gate_open(pcm_ring* r) noexcept nogil
cdef size_t consume_rt(pcm_ring* r, uint8_t* dst, size_t n) noexcept nogil
cdef size_t produce_rt(pcm_ring* r, const uint8_t* src, size_t n) noexcept nogil
cdef void notify(pcm_ring* r) noexcept nogil
# The worker's side, for Cython code on the worker (the playback buffers):
cdef size_t ring_produce(pcm_ring* r, const uint8_t* src, size_t n) noexcept nogil
cdef size_t ring_discard(pcm_ring* r, size_t n) noexcept nogil
cdef uint64_t ring_fill(pcm_ring* r) noexcept nogil
cdef uint64_t ring_read_pos(pcm_ring* r) noexcept nogil
cdef uint64_t ring_write_pos(pcm_ring* r) noexcept nogil
cdef uint64_t drain_fd(pcm_ring* r) noexcept nogil
