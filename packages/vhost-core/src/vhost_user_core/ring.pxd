# Split-ring layout and memory ordering, shared by the device side (virtqueue) and the
# driver side (driver). The other side of a ring is another process, so index loads
# and stores are atomics with acquire/release ordering.
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint16_t vq_load_acquire16(const uint16_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void vq_store_release16(uint16_t *p, uint16_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint16_t vq_load16(const uint16_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void vq_store16(uint16_t *p, uint16_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    static inline void vq_full_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    static inline int vq_need_event(uint16_t event, uint16_t new_idx, uint16_t old) {
        return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
    }
    """
    uint16_t vq_load_acquire16(const uint16_t* p) noexcept nogil
    void vq_store_release16(uint16_t* p, uint16_t v) noexcept nogil
    uint16_t vq_load16(const uint16_t* p) noexcept nogil
    void vq_store16(uint16_t* p, uint16_t v) noexcept nogil
    void vq_full_fence() noexcept nogil
    bint vq_need_event(uint16_t event, uint16_t new_idx, uint16_t old) noexcept nogil

cdef packed struct vring_desc:
    uint64_t addr
    uint32_t len
    uint16_t flags
    uint16_t next

cdef packed struct vring_used_elem:
    uint32_t id
    uint32_t len

cdef enum:
    F_NEXT = 1
    F_WRITE = 2
    F_INDIRECT = 4
    AVAIL_F_NO_INTERRUPT = 1
    USED_F_NO_NOTIFY = 1
