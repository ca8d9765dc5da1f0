# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A small binding of libpipewire-0.3's stream API for the PipeWire audio backend.

Why a binding of our own: the realtime `process` callback must move samples between a
PipeWire buffer and the device's PcmRing without ever touching the GIL (a Python callback
would stall the audio graph whenever the worker thread holds it, and a daemon under load
would crackle). Everything PipeWire calls back into is therefore a `noexcept nogil` C
function working on a C struct; Python only sets streams up and tears them down.

Threads:
- the device's worker thread calls the methods here; each takes the thread loop's lock
  (waiting for it with the GIL released) around its PipeWire calls;
- PipeWire's thread loop runs the core and stream events (state changes, sync replies):
  C callbacks that only record what happened and wake the waiting caller;
- PipeWire's data thread runs `process` (PW_STREAM_FLAG_RT_PROCESS): playback takes what
  the ring has (`consume_rt`) and pads with silence, capture hands what it got to
  `produce_rt`. Both check the direction's switch in C on every call.

A stream keeps a reference to its PcmRing for as long as PipeWire can call back into it,
and it is destroyed (under the loop lock, which also removes it from the data thread)
before that reference is dropped.
"""

import os
import weakref

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from libc.errno cimport errno, ETIMEDOUT
from posix.time cimport timespec

from vhost_device_sound._pcmring cimport PcmRing, consume_rt, pcm_ring, produce_rt


# The C declarations (libpipewire, SPA and the C helpers) are in _pipewire.pxd.

# -- Python-visible constants ----------------------------------------------------------------

AUDIO_FORMAT_U8 = SPA_AUDIO_FORMAT_U8
AUDIO_FORMAT_S16_LE = SPA_AUDIO_FORMAT_S16_LE
AUDIO_FORMAT_S24_32_LE = SPA_AUDIO_FORMAT_S24_32_LE
AUDIO_FORMAT_S32_LE = SPA_AUDIO_FORMAT_S32_LE
AUDIO_FORMAT_F32_LE = SPA_AUDIO_FORMAT_F32_LE

AUDIO_CHANNEL_UNKNOWN = SPA_AUDIO_CHANNEL_UNKNOWN
AUDIO_CHANNEL_NA = SPA_AUDIO_CHANNEL_NA
AUDIO_CHANNEL_MONO = SPA_AUDIO_CHANNEL_MONO
AUDIO_CHANNEL_FL = SPA_AUDIO_CHANNEL_FL
AUDIO_CHANNEL_FR = SPA_AUDIO_CHANNEL_FR
AUDIO_CHANNEL_FC = SPA_AUDIO_CHANNEL_FC
AUDIO_CHANNEL_LFE = SPA_AUDIO_CHANNEL_LFE
AUDIO_CHANNEL_SL = SPA_AUDIO_CHANNEL_SL
AUDIO_CHANNEL_SR = SPA_AUDIO_CHANNEL_SR
AUDIO_CHANNEL_RL = SPA_AUDIO_CHANNEL_RL
AUDIO_CHANNEL_RR = SPA_AUDIO_CHANNEL_RR

cdef enum:
    ERROR_SIZE = 256     # bytes kept of an error message
    POD_SIZE = 1024      # room for the EnumFormat pod (64 positions fit easily)


class PipeWireError(OSError):
    """PipeWire refused or failed a request; `errno` is set when PipeWire gave one."""


def library_version():
    """The version of the libpipewire this process loaded."""
    return pw_get_library_version().decode()


cdef bint _initialised = False

cdef void _ensure_init() noexcept:
    global _initialised
    if not _initialised:
        pw_init(NULL, NULL)
        _initialised = True


# -- state the C callbacks share ---------------------------------------------------------------

cdef struct core_state:
    pw_thread_loop* loop
    spa_hook listener
    int sync_seq
    bint synced
    int error_res                  # negative errno of a core error, 0 while healthy
    char error[ERROR_SIZE]


cdef struct stream_state:
    pw_stream* stream
    pw_thread_loop* loop
    spa_hook listener
    pcm_ring* ring
    uint32_t frame_bytes
    uint8_t silence                # the byte value of a silent sample (0x80 for U8)
    bint playback
    int state                      # last pw_stream_state, written on the loop thread
    char error[ERROR_SIZE]
    # the volume the guest asked for, re-applied until the stream reports it (controls
    # set before PipeWire announced them are dropped); loop lock held for all of these
    bint volume_wanted
    bint volume_seen
    bint mute
    uint32_t n_volumes
    float volumes[SPA_AUDIO_MAX_CHANNELS]
    # realtime counters, in frames (atomic)
    uint64_t cycles
    uint64_t ring_frames           # moved between the ring and PipeWire
    uint64_t silent_frames         # playback padded with silence (ring dry or gated)
    uint64_t dropped_frames        # capture that did not enter the ring (gated or full)


cdef void _copy_error(char* dst, const char* message) noexcept nogil:
    if message != NULL:
        snprintf(dst, ERROR_SIZE, "%s", message)
    else:
        dst[0] = 0


# -- callbacks: loop thread ----------------------------------------------------------------

cdef void _on_core_done(void* data, uint32_t id, int seq) noexcept nogil:
    cdef core_state* c = <core_state*>data
    if id == PW_ID_CORE and seq == c.sync_seq:
        c.synced = True
        pw_thread_loop_signal(c.loop, False)


cdef void _on_core_error(void* data, uint32_t id, int seq, int res,
                         const char* message) noexcept nogil:
    # Errors about other objects (a stream's node) reach the stream as a state change.
    cdef core_state* c = <core_state*>data
    if id == PW_ID_CORE:
        c.error_res = res if res < 0 else -res
        _copy_error(c.error, message)
        pw_thread_loop_signal(c.loop, False)


cdef void _on_state_changed(void* data, pw_stream_state old, pw_stream_state state,
                            const char* error) noexcept nogil:
    cdef stream_state* s = <stream_state*>data
    s.state = state
    if state == PW_STREAM_STATE_ERROR:
        _copy_error(s.error, error)
    pw_thread_loop_signal(s.loop, False)


cdef bint _volume_matches(stream_state* s, uint32_t id,
                          const pw_stream_control* control) noexcept nogil:
    cdef uint32_t i
    if id == SPA_PROP_mute:
        return control.n_values >= 1 and (control.values[0] > 0.5) == s.mute
    if control.n_values != s.n_volumes:
        return False
    for i in range(s.n_volumes):
        if not -1e-4 < control.values[i] - s.volumes[i] < 1e-4:
            return False
    return True


cdef void _on_control_info(void* data, uint32_t id,
                           const pw_stream_control* control) noexcept nogil:
    """PipeWire announced (or changed) a control: push the guest's volume until the
    stream reports it, then leave later changes (a host mixer) alone."""
    cdef stream_state* s = <stream_state*>data
    if not s.volume_wanted or s.volume_seen or control == NULL:
        return
    if id != SPA_PROP_channelVolumes and id != SPA_PROP_mute:
        return
    if id == SPA_PROP_channelVolumes and _volume_matches(s, id, control):
        s.volume_seen = True
    elif not _volume_matches(s, id, control):
        vds_set_volume(s.stream, s.n_volumes, s.volumes, s.mute)


# -- callback: data thread (realtime) --------------------------------------------------------

cdef inline uint64_t _ring_fill(pcm_ring* r) noexcept nogil:
    return vds_load(&r.write_pos) - vds_load(&r.read_pos)


cdef void _playback(stream_state* s, pw_buffer* b, spa_data* d) noexcept nogil:
    """Fill one buffer: what the ring has (whole frames only), then silence. Never the
    buffer's previous contents: replaying stale audio is what made upstream choppy."""
    cdef uint8_t* dst = <uint8_t*>d.data
    cdef uint64_t stride = s.frame_bytes
    cdef uint64_t frames = d.maxsize // stride
    cdef uint64_t want, avail, got
    if b.requested and b.requested < frames:
        frames = b.requested
    want = frames * stride
    avail = _ring_fill(s.ring)
    avail -= avail % stride
    got = consume_rt(s.ring, dst, want if want < avail else avail)
    if got < want:
        memset(dst + got, s.silence, want - got)
    d.chunk.offset = 0
    d.chunk.stride = <int32_t>stride
    d.chunk.size = <uint32_t>want
    b.size = frames
    vds_add(&s.ring_frames, got // stride)
    vds_add(&s.silent_frames, (want - got) // stride)


cdef void _capture(stream_state* s, spa_data* d) noexcept nogil:
    """Hand whole captured frames to the ring; it takes none while the input is off."""
    cdef uint64_t stride = s.frame_bytes
    cdef uint64_t offset = d.chunk.offset
    cdef uint64_t size = d.chunk.size
    cdef uint64_t room, put
    if offset > d.maxsize:
        offset = d.maxsize
    if size > d.maxsize - offset:
        size = d.maxsize - offset
    size -= size % stride
    room = s.ring.capacity - _ring_fill(s.ring)
    room -= room % stride
    put = 0
    if size:
        # Even into a full ring (room 0): produce_rt then wakes the worker at once.
        put = produce_rt(s.ring, <uint8_t*>d.data + offset, size if size < room else room)
    vds_add(&s.ring_frames, put // stride)
    vds_add(&s.dropped_frames, (size - put) // stride)


cdef void _on_process(void* data) noexcept nogil:
    cdef stream_state* s = <stream_state*>data
    cdef pw_buffer* b = pw_stream_dequeue_buffer(s.stream)
    cdef spa_data* d
    if b == NULL:
        return
    vds_add(&s.cycles, 1)
    if b.buffer.n_datas > 0:
        d = &b.buffer.datas[0]
        if d.data != NULL and d.chunk != NULL:
            if s.playback:
                _playback(s, b, d)
            else:
                _capture(s, d)
        elif d.chunk != NULL:
            d.chunk.size = 0
    pw_stream_queue_buffer(s.stream, b)


cdef pw_core_events _CORE_EVENTS
memset(&_CORE_EVENTS, 0, sizeof(_CORE_EVENTS))
_CORE_EVENTS.version = PW_VERSION_CORE_EVENTS
_CORE_EVENTS.done = _on_core_done
_CORE_EVENTS.error = _on_core_error

cdef pw_stream_events _STREAM_EVENTS
memset(&_STREAM_EVENTS, 0, sizeof(_STREAM_EVENTS))
_STREAM_EVENTS.version = PW_VERSION_STREAM_EVENTS
_STREAM_EVENTS.state_changed = _on_state_changed
_STREAM_EVENTS.control_info = _on_control_info
_STREAM_EVENTS.process = _on_process


# -- Python API ----------------------------------------------------------------------------

cdef pw_properties* _properties(dict items) except NULL:
    cdef pw_properties* props = pw_properties_new(NULL, NULL)
    if props == NULL:
        raise MemoryError()
    for key, value in items.items():
        pw_properties_set(props, str(key).encode(), str(value).encode())
    return props


cdef class PipeWireConnection:
    """A thread loop, a context and a connected core: one per backend."""

    cdef pw_thread_loop* loop
    cdef pw_context* context
    cdef pw_core* core
    cdef core_state c
    cdef object _streams
    cdef object __weakref__

    def __cinit__(self):
        self.loop = NULL
        self.context = NULL
        self.core = NULL
        memset(&self.c, 0, sizeof(self.c))

    def __init__(self, str app_name="vhost-device-sound", remote=None, double timeout=5.0):
        cdef pw_properties* props
        cdef int err
        self._streams = weakref.WeakSet()
        _ensure_init()
        self.loop = pw_thread_loop_new(b"vhost-pipewire", NULL)
        if self.loop == NULL:
            raise PipeWireError(errno, "cannot create the PipeWire thread loop")
        self.c.loop = self.loop
        self.context = pw_context_new(pw_thread_loop_get_loop(self.loop), NULL, 0)
        if self.context == NULL:
            err = errno
            self._teardown()
            raise PipeWireError(err, f"cannot create a PipeWire context: {os.strerror(err)}")
        err = -pw_thread_loop_start(self.loop)
        if err > 0:
            self._teardown()
            raise PipeWireError(err, f"cannot start the PipeWire thread: {os.strerror(err)}")
        items = {"application.name": app_name}
        if remote:
            items["remote.name"] = str(remote)
        props = _properties(items)
        self._lock()
        try:
            self.core = pw_context_connect(self.context, props, 0)  # takes props
            if self.core == NULL:
                err = errno
            else:
                pw_core_add_listener(self.core, &self.c.listener, &_CORE_EVENTS, &self.c)
                self.c.sync_seq = pw_core_sync(self.core, PW_ID_CORE, 0)
                self._wait_core(timeout)
        finally:
            self._unlock()
        if self.core == NULL:
            self._teardown()
            raise PipeWireError(err, os.strerror(err))
        if not self.c.synced:
            message = self.error or f"no answer from PipeWire within {timeout:g} s"
            self._teardown()
            raise PipeWireError(0, message)

    def __dealloc__(self):
        self._teardown()

    cdef void _lock(self) noexcept:
        with nogil:
            pw_thread_loop_lock(self.loop)

    cdef void _unlock(self) noexcept:
        pw_thread_loop_unlock(self.loop)

    cdef bint _wait(self, timespec* deadline) noexcept:
        """Wait (loop lock held, GIL released) for a callback's signal; False once the
        deadline has passed."""
        cdef int res
        with nogil:
            res = pw_thread_loop_timed_wait_full(self.loop, deadline)
        return res != -ETIMEDOUT

    cdef void _wait_core(self, double timeout) noexcept:
        cdef timespec deadline
        pw_thread_loop_get_time(self.loop, &deadline, <int64_t>(timeout * 1e9))
        while not self.c.synced and self.c.error_res == 0:
            if not self._wait(&deadline):
                break

    cdef void _teardown(self) noexcept:
        """Free the C side (streams must be gone). Safe to call repeatedly."""
        if self.core != NULL:
            self._lock()
            spa_hook_remove(&self.c.listener)
            pw_core_disconnect(self.core)
            self.core = NULL
            self._unlock()
        if self.loop != NULL:
            with nogil:
                pw_thread_loop_stop(self.loop)
        if self.context != NULL:
            pw_context_destroy(self.context)
            self.context = NULL
        if self.loop != NULL:
            pw_thread_loop_destroy(self.loop)
            self.loop = NULL

    @property
    def connected(self):
        """True while the core is connected and has reported no error."""
        return self.core != NULL and self.c.error_res == 0

    @property
    def error(self):
        if self.c.error_res == 0:
            return None
        reason = os.strerror(-self.c.error_res)
        text = self.c.error.decode(errors="replace")
        return f"{text} ({reason})" if text else reason

    def close(self):
        """Destroy every stream, disconnect and stop the thread loop. Idempotent."""
        if self._streams is not None:
            for stream in list(self._streams):
                stream.destroy()
        self._teardown()

    def create_stream(
        self,
        *,
        bint playback,
        str name,
        dict properties,
        uint32_t audio_format,
        uint32_t rate,
        positions,
        uint32_t frame_bytes,
        PcmRing ring not None,
        double timeout=5.0,
    ):
        """Connect an inactive, autoconnected stream offering exactly this format, and
        wait until PipeWire has accepted it (PAUSED) or refused it."""
        cdef uint32_t pos[SPA_AUDIO_MAX_CHANNELS]
        cdef uint8_t pod_mem[POD_SIZE]
        cdef const spa_pod* params[1]
        cdef uint32_t channels = len(positions)
        cdef uint32_t i
        cdef stream_state* s
        cdef pw_properties* props
        cdef int res = 0
        cdef timespec deadline
        cdef pw_stream_flags flags = <pw_stream_flags>(
            PW_STREAM_FLAG_AUTOCONNECT | PW_STREAM_FLAG_MAP_BUFFERS
            | PW_STREAM_FLAG_RT_PROCESS | PW_STREAM_FLAG_INACTIVE
        )
        if not self.connected:
            raise PipeWireError(0, self.error or "not connected to PipeWire")
        if channels == 0 or channels > SPA_AUDIO_MAX_CHANNELS:
            raise ValueError(f"{channels} channels")
        if frame_bytes == 0 or rate == 0:
            raise ValueError("frame size and rate must be positive")
        for i in range(channels):
            pos[i] = positions[i]
        params[0] = vds_format_pod(pod_mem, POD_SIZE, audio_format, rate, channels, pos)
        if params[0] == NULL:
            raise ValueError("cannot describe this audio format to PipeWire")

        s = <stream_state*>calloc(1, sizeof(stream_state))
        if s == NULL:
            raise MemoryError()
        s.loop = self.loop
        s.ring = &ring.ring
        s.frame_bytes = frame_bytes
        s.silence = 0x80 if audio_format == SPA_AUDIO_FORMAT_U8 else 0
        s.playback = playback
        s.state = PW_STREAM_STATE_UNCONNECTED
        try:
            props = _properties(properties)
        except BaseException:
            free(s)
            raise

        self._lock()
        try:
            s.stream = pw_stream_new(self.core, name.encode(), props)  # takes props
            if s.stream == NULL:
                res = -errno
            else:
                pw_stream_add_listener(s.stream, &s.listener, &_STREAM_EVENTS, s)
                res = pw_stream_connect(
                    s.stream,
                    PW_DIRECTION_OUTPUT if playback else PW_DIRECTION_INPUT,
                    PW_ID_ANY,
                    flags,
                    params,
                    1,
                )
                if res >= 0:
                    pw_thread_loop_get_time(self.loop, &deadline, <int64_t>(timeout * 1e9))
                    while (
                        s.state == PW_STREAM_STATE_UNCONNECTED
                        or s.state == PW_STREAM_STATE_CONNECTING
                    ) and self.c.error_res == 0:
                        if not self._wait(&deadline):
                            break
            if res < 0 or not (
                s.state == PW_STREAM_STATE_PAUSED or s.state == PW_STREAM_STATE_STREAMING
            ):
                if s.stream != NULL:
                    pw_stream_destroy(s.stream)
                    s.stream = NULL
        finally:
            self._unlock()

        if s.stream == NULL:
            if res < 0:
                message = os.strerror(-res)
            elif s.state == PW_STREAM_STATE_ERROR:
                message = s.error.decode(errors="replace") or "stream error"
            elif self.c.error_res:
                message = self.error
            else:
                message = f"PipeWire did not set the stream up within {timeout:g} s"
            free(s)
            raise PipeWireError(-res if res < 0 else 0, message)

        cdef PipeWireStream stream = PipeWireStream.__new__(PipeWireStream)
        stream._attach(self, s, ring)
        self._streams.add(stream)
        return stream


cdef class PipeWireStream:
    """One connected pw_stream feeding from (playback) or into (capture) a PcmRing."""

    cdef stream_state* s
    cdef PipeWireConnection conn
    cdef PcmRing ring
    cdef bint _active
    cdef uint32_t _channels
    cdef object __weakref__

    def __cinit__(self):
        self.s = NULL

    def __init__(self):
        raise TypeError("streams come from PipeWireConnection.create_stream()")

    cdef void _attach(self, PipeWireConnection conn, stream_state* s, PcmRing ring) noexcept:
        self.conn = conn
        self.s = s
        self.ring = ring
        self._active = False

    def __dealloc__(self):
        self._destroy()

    cdef void _destroy(self) noexcept:
        if self.s == NULL:
            return
        if self.conn is not None and self.conn.loop != NULL:
            self.conn._lock()
            pw_stream_destroy(self.s.stream)  # also leaves the data thread
            self.conn._unlock()
        free(self.s)
        self.s = NULL
        self.ring = None

    cdef stream_state* _live(self) except NULL:
        if self.s == NULL:
            raise PipeWireError(0, "the stream was destroyed")
        return self.s

    def destroy(self):
        """Disconnect and free the stream; PipeWire no longer touches the ring after."""
        self._destroy()

    @property
    def destroyed(self):
        return self.s == NULL

    def set_active(self, bint active):
        cdef stream_state* s = self._live()
        cdef int res
        self.conn._lock()
        res = pw_stream_set_active(s.stream, active)
        self.conn._unlock()
        if res < 0:
            raise PipeWireError(-res, f"cannot (de)activate the stream: {os.strerror(-res)}")
        self._active = active

    @property
    def active(self):
        return self._active

    def set_volume(self, volumes, bint mute):
        """Per-channel linear volumes and mute (SPA_PROP_channelVolumes, SPA_PROP_mute).
        Also kept, and applied again once PipeWire announces the stream's controls."""
        cdef stream_state* s = self._live()
        cdef float values[SPA_AUDIO_MAX_CHANNELS]
        cdef uint32_t n = len(volumes), i
        cdef int res
        if n == 0 or n > SPA_AUDIO_MAX_CHANNELS:
            raise ValueError(f"{n} volumes")
        for i in range(n):
            values[i] = volumes[i]
        self.conn._lock()
        for i in range(n):
            s.volumes[i] = values[i]
        s.n_volumes = n
        s.mute = mute
        s.volume_wanted = True
        s.volume_seen = False
        res = vds_set_volume(s.stream, n, values, mute)
        self.conn._unlock()
        if res < 0:
            raise PipeWireError(-res, f"cannot set the stream volume: {os.strerror(-res)}")

    @property
    def node_id(self):
        cdef stream_state* s = self._live()
        cdef uint32_t node
        self.conn._lock()
        node = pw_stream_get_node_id(s.stream)
        self.conn._unlock()
        return node

    @property
    def state(self):
        """PipeWire's name for the stream state: error, unconnected, connecting, paused,
        streaming ("destroyed" once destroyed)."""
        if self.s == NULL:
            return "destroyed"
        return pw_stream_state_as_string(<pw_stream_state>self.s.state).decode()

    @property
    def error(self):
        if self.s == NULL or self.s.state != PW_STREAM_STATE_ERROR:
            return None
        return self.s.error.decode(errors="replace")

    def counters(self):
        """Realtime counters in frames: cycles, ring (moved to or from the ring), silent
        (playback padding) and dropped (capture the ring did not take)."""
        cdef stream_state* s = self._live()
        return {
            "cycles": vds_load(&s.cycles),
            "ring": vds_load(&s.ring_frames),
            "silent": vds_load(&s.silent_frames),
            "dropped": vds_load(&s.dropped_frames),
        }
