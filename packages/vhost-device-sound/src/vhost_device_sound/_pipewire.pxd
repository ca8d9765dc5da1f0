# libpipewire-0.3's stream API as _pipewire.pyx uses it, and the few helpers it needs
# written in C: the declarations apart from the binding's code (Cython reads this file
# for _pipewire.pyx on its own). Only what the binding calls is declared.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from posix.time cimport timespec


cdef extern from "<spa/utils/hook.h>" nogil:
    struct spa_hook:
        pass
    void spa_hook_remove(spa_hook* hook)

cdef extern from "<spa/buffer/buffer.h>" nogil:
    struct spa_chunk:
        uint32_t offset
        uint32_t size
        int32_t stride
        int32_t flags
    struct spa_data:
        uint32_t maxsize
        void* data
        spa_chunk* chunk
    struct spa_buffer:
        uint32_t n_datas
        spa_data* datas

cdef extern from "<spa/pod/pod.h>" nogil:
    struct spa_pod:
        pass

cdef extern from "<spa/param/props.h>" nogil:
    enum:
        SPA_PROP_mute
        SPA_PROP_channelVolumes

cdef extern from "<spa/param/audio/raw.h>" nogil:
    enum:
        SPA_AUDIO_FORMAT_U8
        SPA_AUDIO_FORMAT_S16_LE
        SPA_AUDIO_FORMAT_S24_32_LE
        SPA_AUDIO_FORMAT_S32_LE
        SPA_AUDIO_FORMAT_F32_LE
        SPA_AUDIO_CHANNEL_UNKNOWN
        SPA_AUDIO_CHANNEL_NA
        SPA_AUDIO_CHANNEL_MONO
        SPA_AUDIO_CHANNEL_FL
        SPA_AUDIO_CHANNEL_FR
        SPA_AUDIO_CHANNEL_FC
        SPA_AUDIO_CHANNEL_LFE
        SPA_AUDIO_CHANNEL_SL
        SPA_AUDIO_CHANNEL_SR
        SPA_AUDIO_CHANNEL_RL
        SPA_AUDIO_CHANNEL_RR
        SPA_AUDIO_MAX_CHANNELS

cdef extern from "<pipewire/pipewire.h>" nogil:
    struct pw_loop:
        pass
    struct pw_thread_loop:
        pass
    struct pw_context:
        pass
    struct pw_core:
        pass
    struct pw_stream:
        pass
    struct pw_properties:
        pass

    enum:
        PW_ID_CORE
        PW_ID_ANY

    void pw_init(int* argc, char*** argv)
    const char* pw_get_library_version()

    pw_thread_loop* pw_thread_loop_new(const char* name, const void* props)
    void pw_thread_loop_destroy(pw_thread_loop* loop)
    pw_loop* pw_thread_loop_get_loop(pw_thread_loop* loop)
    int pw_thread_loop_start(pw_thread_loop* loop)
    void pw_thread_loop_stop(pw_thread_loop* loop)
    void pw_thread_loop_lock(pw_thread_loop* loop)
    void pw_thread_loop_unlock(pw_thread_loop* loop)
    void pw_thread_loop_signal(pw_thread_loop* loop, bint wait_for_accept)
    int pw_thread_loop_get_time(pw_thread_loop* loop, timespec* abstime, int64_t timeout)
    int pw_thread_loop_timed_wait_full(pw_thread_loop* loop, const timespec* abstime)

    pw_properties* pw_properties_new(const char* key, ...)
    int pw_properties_set(pw_properties* props, const char* key, const char* value)
    void pw_properties_free(pw_properties* props)

    pw_context* pw_context_new(pw_loop* main_loop, pw_properties* props, size_t user_size)
    void pw_context_destroy(pw_context* context)
    pw_core* pw_context_connect(pw_context* context, pw_properties* props, size_t user_size)
    int pw_core_disconnect(pw_core* core)

    struct pw_core_events:
        uint32_t version
        void (*done)(void* data, uint32_t id, int seq) noexcept nogil
        void (*error)(void* data, uint32_t id, int seq, int res,
                      const char* message) noexcept nogil
    enum:
        PW_VERSION_CORE_EVENTS
    int pw_core_add_listener(pw_core* core, spa_hook* listener,
                             const pw_core_events* events, void* data)
    int pw_core_sync(pw_core* core, uint32_t id, int seq)

    enum pw_direction:
        PW_DIRECTION_INPUT
        PW_DIRECTION_OUTPUT

    enum pw_stream_state:
        PW_STREAM_STATE_ERROR
        PW_STREAM_STATE_UNCONNECTED
        PW_STREAM_STATE_CONNECTING
        PW_STREAM_STATE_PAUSED
        PW_STREAM_STATE_STREAMING

    enum pw_stream_flags:
        PW_STREAM_FLAG_AUTOCONNECT
        PW_STREAM_FLAG_INACTIVE
        PW_STREAM_FLAG_MAP_BUFFERS
        PW_STREAM_FLAG_RT_PROCESS

    struct pw_buffer:
        spa_buffer* buffer
        uint64_t size
        uint64_t requested

    struct pw_stream_control:
        float* values
        uint32_t n_values

    struct pw_stream_events:
        uint32_t version
        void (*state_changed)(void* data, pw_stream_state old, pw_stream_state state,
                              const char* error) noexcept nogil
        void (*control_info)(void* data, uint32_t id,
                             const pw_stream_control* control) noexcept nogil
        void (*process)(void* data) noexcept nogil
    enum:
        PW_VERSION_STREAM_EVENTS

    const char* pw_stream_state_as_string(pw_stream_state state)
    pw_stream* pw_stream_new(pw_core* core, const char* name, pw_properties* props)
    void pw_stream_destroy(pw_stream* stream)
    void pw_stream_add_listener(pw_stream* stream, spa_hook* listener,
                                const pw_stream_events* events, void* data)
    int pw_stream_connect(pw_stream* stream, pw_direction direction, uint32_t target_id,
                          pw_stream_flags flags, const spa_pod** params, uint32_t n_params)
    uint32_t pw_stream_get_node_id(pw_stream* stream)
    int pw_stream_set_active(pw_stream* stream, bint active)
    pw_buffer* pw_stream_dequeue_buffer(pw_stream* stream)
    int pw_stream_queue_buffer(pw_stream* stream, pw_buffer* buffer)


# Helpers written in C: the SPA pod builder and pw_stream_set_control are static inline or
# variadic, and the realtime counters need atomics.
cdef extern from *:
    """
    #include <errno.h>
    #include <string.h>
    #include <pipewire/pipewire.h>
    #include <spa/param/audio/format-utils.h>
    #include <spa/param/props.h>
    #include <spa/pod/builder.h>

    /* The EnumFormat param offering exactly one raw audio format. */
    static const struct spa_pod *vds_format_pod(uint8_t *mem, uint32_t size,
            uint32_t format, uint32_t rate, uint32_t channels, const uint32_t *positions)
    {
        struct spa_pod_builder builder = SPA_POD_BUILDER_INIT(mem, size);
        struct spa_audio_info_raw info;
        uint32_t i;

        if (channels == 0 || channels > SPA_AUDIO_MAX_CHANNELS)
            return NULL;
        memset(&info, 0, sizeof(info));
        info.format = (enum spa_audio_format)format;
        info.rate = rate;
        info.channels = channels;
        for (i = 0; i < channels; i++)
            info.position[i] = positions[i];
        return spa_format_audio_raw_build(&builder, SPA_PARAM_EnumFormat, &info);
    }

    /* Channel volumes (linear, one per channel) and mute in one Props update. */
    static int vds_set_volume(struct pw_stream *stream, uint32_t n, float *volumes,
            int mute)
    {
        float muted = mute ? 1.0f : 0.0f;
        return pw_stream_set_control(stream, SPA_PROP_channelVolumes, n, volumes,
                SPA_PROP_mute, 1, &muted, 0);
    }

    static inline uint64_t vds_load(const uint64_t *p)
    {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }

    static inline void vds_add(uint64_t *p, uint64_t v)
    {
        __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
    }
    """
    const spa_pod* vds_format_pod(uint8_t* mem, uint32_t size, uint32_t format,
                                  uint32_t rate, uint32_t channels,
                                  const uint32_t* positions) noexcept nogil
    int vds_set_volume(pw_stream* stream, uint32_t n, float* volumes, int mute) noexcept nogil
    uint64_t vds_load(const uint64_t* p) noexcept nogil
    void vds_add(uint64_t* p, uint64_t v) noexcept nogil
