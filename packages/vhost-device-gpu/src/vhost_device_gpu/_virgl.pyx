# cython: language_level=3
"""A thin binding to libvirglrenderer (0.10): the calls the virgl renderer makes, with
the GIL released around those that render, and its fence callbacks collected here for
the owner to read after `poll()`.

virglrenderer is one per process and its GL context is bound to the thread that called
`init`: every call but `attach_iov`/`detach_iov` must come from that thread (the
Python side, `virgl.py`, keeps to it). Guest-facing checks are that side's too; this
module checks only what would make a C call unsafe (buffer sizes, iovec lifetimes).
"""

from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

cdef extern from *:
    """
    #define VIRGL_RENDERER_UNSTABLE_APIS 1
    #include <stdarg.h>
    #include <stdio.h>
    #include <sys/uio.h>
    #include <virglrenderer.h>
    /* virglrenderer.h declares it opaque; its layout is the protocol's (virgl_hw.h). */
    struct virgl_box { uint32_t x, y, z, w, h, d; };
    """
    ctypedef void* va_list  # opaque: only handed on to vsnprintf

    struct iovec:
        void* iov_base
        size_t iov_len

    struct virgl_box:
        uint32_t x, y, z, w, h, d

    ctypedef void* virgl_renderer_gl_context
    struct virgl_renderer_gl_ctx_param:
        pass

    struct virgl_renderer_callbacks:
        int version
        void (*write_fence)(void* cookie, uint32_t fence) noexcept
        virgl_renderer_gl_context (*create_gl_context)(
            void* cookie, int scanout_idx, virgl_renderer_gl_ctx_param* param) noexcept
        void (*destroy_gl_context)(void* cookie, virgl_renderer_gl_context ctx) noexcept
        int (*make_current)(void* cookie, int scanout_idx, virgl_renderer_gl_context ctx) noexcept
        int (*get_drm_fd)(void* cookie) noexcept
        void (*write_context_fence)(
            void* cookie, uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id) noexcept
        int (*get_server_fd)(void* cookie, uint32_t version) noexcept
        void* (*get_egl_display)(void* cookie) noexcept

    struct virgl_renderer_resource_create_args:
        uint32_t handle, target, format, bind, width, height, depth
        uint32_t array_size, last_level, nr_samples, flags

    struct virgl_renderer_resource_create_blob_args:
        uint32_t res_handle, ctx_id, blob_mem, blob_flags
        uint64_t blob_id, size
        const iovec* iovecs
        uint32_t num_iovs

    struct virgl_renderer_resource_info:
        uint32_t handle, virgl_format, width, height, depth, flags, tex_id, stride
        int drm_fourcc

    ctypedef void (*virgl_debug_callback_type)(const char* fmt, va_list ap) noexcept

    int VIRGL_RENDERER_CALLBACKS_VERSION
    int virgl_renderer_init(void* cookie, int flags, virgl_renderer_callbacks* cb) nogil
    void virgl_renderer_poll() nogil
    void virgl_renderer_cleanup(void* cookie) nogil
    int virgl_renderer_get_poll_fd()
    void virgl_renderer_get_cap_set(uint32_t set, uint32_t* max_ver, uint32_t* max_size)
    void virgl_renderer_fill_caps(uint32_t set, uint32_t version, void* caps) nogil
    int virgl_renderer_context_create(uint32_t handle, uint32_t nlen, const char* name) nogil
    int virgl_renderer_context_create_with_flags(
        uint32_t ctx_id, uint32_t ctx_flags, uint32_t nlen, const char* name) nogil
    void virgl_renderer_context_destroy(uint32_t handle) nogil
    int virgl_renderer_resource_create(
        virgl_renderer_resource_create_args* args, iovec* iov, uint32_t num_iovs) nogil
    void virgl_renderer_resource_unref(uint32_t res_handle) nogil
    int virgl_renderer_resource_create_blob(
        const virgl_renderer_resource_create_blob_args* args) nogil
    int virgl_renderer_resource_attach_iov(int res_handle, iovec* iov, int num_iovs) nogil
    void virgl_renderer_resource_detach_iov(int res_handle, iovec** iov, int* num_iovs) nogil
    void virgl_renderer_ctx_attach_resource(int ctx_id, int res_handle) nogil
    void virgl_renderer_ctx_detach_resource(int ctx_id, int res_handle) nogil
    int virgl_renderer_submit_cmd(void* buffer, int ctx_id, int ndw) nogil
    int virgl_renderer_transfer_read_iov(
        uint32_t handle, uint32_t ctx_id, uint32_t level, uint32_t stride,
        uint32_t layer_stride, virgl_box* box, uint64_t offset, iovec* iov,
        int iovec_cnt) nogil
    int virgl_renderer_transfer_write_iov(
        uint32_t handle, uint32_t ctx_id, int level, uint32_t stride, uint32_t layer_stride,
        virgl_box* box, uint64_t offset, iovec* iovec, unsigned int iovec_cnt) nogil
    int virgl_renderer_create_fence(int client_fence_id, uint32_t ctx_id) nogil
    int virgl_renderer_context_create_fence(
        uint32_t ctx_id, uint32_t flags, uint64_t queue_id, uint64_t fence_id) nogil
    void virgl_renderer_force_ctx_0() nogil
    int virgl_renderer_resource_get_info(int res_handle, virgl_renderer_resource_info* info)
    int virgl_renderer_get_fd_for_texture2(uint32_t tex_id, int* fd, int* stride, int* offset) nogil
    virgl_debug_callback_type virgl_set_debug_callback(virgl_debug_callback_type cb)
    int vsnprintf(char* s, size_t n, const char* fmt, va_list ap) nogil

# Flags (virglrenderer.h).
USE_EGL = 1
THREAD_SYNC = 2
USE_GLX = 1 << 2
USE_SURFACELESS = 1 << 3
USE_GLES = 1 << 4


class VirglError(OSError):
    """A virglrenderer call failed; errno is what it returned (positive)."""


#: Fences signalled since the last `take_fences()`: global (write_fence) ids, and
#: per-context-ring (write_context_fence) (ctx, ring, id) triples. Written by the
#: callbacks, which virglrenderer makes from `poll()` on the owner's thread.
cdef list _global_fences = []
cdef list _ring_fences = []
#: The debug messages' sink (set by the Python side).
_log_sink = None
cdef int _drm_fd = -1
cdef bint _initialised = False
cdef virgl_renderer_callbacks _callbacks


cdef void _write_fence(void* cookie, uint32_t fence) noexcept with gil:
    _global_fences.append(fence)


cdef void _write_context_fence(
    void* cookie, uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id
) noexcept with gil:
    _ring_fences.append((ctx_id, ring_idx, fence_id))


cdef int _get_drm_fd(void* cookie) noexcept with gil:
    """virglrenderer takes ownership of the fd it is given: a fresh dup each call."""
    import os

    if _drm_fd < 0:
        return -1
    try:
        return os.dup(_drm_fd)
    except OSError:
        return -1


cdef void _debug(const char* fmt, va_list ap) noexcept with gil:
    cdef char buf[1024]
    vsnprintf(buf, sizeof(buf), fmt, ap)
    text = buf.decode("utf-8", "replace").rstrip()
    sink = _log_sink
    if sink is not None and text:
        try:
            sink(text)
        except Exception:
            pass


def set_log_sink(sink):
    """Where virglrenderer's messages go: a callable taking one line, or None."""
    global _log_sink
    _log_sink = sink


def init(int flags, int drm_fd=-1):
    """virgl_renderer_init on this thread with our callbacks (v3: ring fences);
    `drm_fd` is the render node virglrenderer gets (duplicated) for its winsys."""
    global _drm_fd, _initialised
    if _initialised:
        raise VirglError(16, "virglrenderer is already initialised in this process")
    memset(&_callbacks, 0, sizeof(_callbacks))
    _callbacks.version = 3
    _callbacks.write_fence = _write_fence
    _callbacks.write_context_fence = _write_context_fence
    _callbacks.get_drm_fd = _get_drm_fd
    _drm_fd = drm_fd
    virgl_set_debug_callback(_debug)
    cdef int rc
    # The cookie must not be NULL (virgl_renderer_init refuses it); ours is unused.
    with nogil:
        rc = virgl_renderer_init(<void*>&_callbacks, flags, &_callbacks)
    if rc != 0:
        _drm_fd = -1
        raise VirglError(-rc if rc < 0 else rc, f"virgl_renderer_init(flags {flags:#x}) = {rc}")
    _initialised = True
    del _global_fences[:]
    del _ring_fences[:]


def initialised():
    return _initialised


def cleanup():
    global _initialised, _drm_fd
    if not _initialised:
        return
    with nogil:
        virgl_renderer_cleanup(<void*>&_callbacks)
    _initialised = False
    _drm_fd = -1
    del _global_fences[:]
    del _ring_fences[:]


def poll_fd():
    """The eventfd that becomes readable when fences may have signalled (THREAD_SYNC),
    or -1: then `poll()` must be called while fences are pending."""
    return virgl_renderer_get_poll_fd()


def poll():
    with nogil:
        virgl_renderer_poll()


def take_fences():
    """(global fence ids, [(ctx, ring, id)]) signalled since the last call."""
    g, r = list(_global_fences), list(_ring_fences)
    del _global_fences[:]
    del _ring_fences[:]
    return g, r


def force_ctx_0():
    with nogil:
        virgl_renderer_force_ctx_0()


def get_cap_set(uint32_t capset_id):
    """(max_version, max_size) of a capset; (0, 0) if virglrenderer has none."""
    cdef uint32_t max_ver = 0, max_size = 0
    virgl_renderer_get_cap_set(capset_id, &max_ver, &max_size)
    return max_ver, max_size


def fill_caps(uint32_t capset_id, uint32_t version, uint32_t size):
    """The capset blob, `size` bytes (get_cap_set's max_size)."""
    buf = bytearray(size)
    cdef unsigned char[::1] view = buf
    if size:
        with nogil:
            virgl_renderer_fill_caps(capset_id, version, &view[0])
    return bytes(buf)


def context_create(uint32_t ctx_id, uint32_t ctx_flags, bytes name):
    """A context; `ctx_flags` is CTX_CREATE's context_init (its low byte the capset
    id), 0 for the classic virgl context (the _with_flags call refuses capset 0)."""
    cdef const char* c_name = name
    cdef uint32_t nlen = len(name)
    cdef int rc
    with nogil:
        if ctx_flags:
            rc = virgl_renderer_context_create_with_flags(ctx_id, ctx_flags, nlen, c_name)
        else:
            rc = virgl_renderer_context_create(ctx_id, nlen, c_name)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"context_create({ctx_id}) = {rc}")


def context_destroy(uint32_t ctx_id):
    with nogil:
        virgl_renderer_context_destroy(ctx_id)


cdef class Iovecs:
    """A C iovec array over memoryviews (guest memory or our own buffers). It must
    outlive every virglrenderer use of it: an attached resource's is kept until detach,
    and holding the views keeps the mappings alive."""

    cdef iovec* iov
    cdef int count
    cdef list _views
    cdef readonly uint64_t size

    def __cinit__(self, views):
        cdef unsigned char[::1] mv
        cdef int i = 0
        views = [v for v in views if len(v)]
        self.count = len(views)
        self.iov = <iovec*>malloc((self.count or 1) * sizeof(iovec))
        if self.iov == NULL:
            raise MemoryError()
        self._views = []
        self.size = 0
        for view in views:
            mv = view
            self._views.append(mv)
            self.iov[i].iov_base = &mv[0]
            self.iov[i].iov_len = mv.shape[0]
            self.size += mv.shape[0]
            i += 1

    def __dealloc__(self):
        free(self.iov)

    def __len__(self):
        return self.count


def resource_create(
    uint32_t handle, uint32_t target, uint32_t format, uint32_t bind, uint32_t width,
    uint32_t height, uint32_t depth, uint32_t array_size, uint32_t last_level,
    uint32_t nr_samples, uint32_t flags,
):
    cdef virgl_renderer_resource_create_args args
    args.handle = handle
    args.target = target
    args.format = format
    args.bind = bind
    args.width = width
    args.height = height
    args.depth = depth
    args.array_size = array_size
    args.last_level = last_level
    args.nr_samples = nr_samples
    args.flags = flags
    cdef int rc
    with nogil:
        rc = virgl_renderer_resource_create(&args, NULL, 0)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"resource_create({handle}) = {rc}")


def resource_create_guest_blob(
    uint32_t handle, uint32_t blob_flags, uint64_t size, Iovecs iovecs
):
    """A guest-memory blob (BLOB_MEM_GUEST, no context) over `iovecs`, which the caller
    keeps until detach like an attached backing."""
    cdef virgl_renderer_resource_create_blob_args args
    args.res_handle = handle
    args.ctx_id = 0
    args.blob_mem = 1  # VIRGL_RENDERER_BLOB_MEM_GUEST
    args.blob_flags = blob_flags
    args.blob_id = 0
    args.size = size
    args.iovecs = iovecs.iov
    args.num_iovs = iovecs.count
    cdef int rc
    with nogil:
        rc = virgl_renderer_resource_create_blob(&args)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"resource_create_blob({handle}) = {rc}")


def resource_unref(uint32_t handle):
    with nogil:
        virgl_renderer_resource_unref(handle)


def attach_iov(uint32_t handle, Iovecs iovecs):
    """The resource's backing from now on; the caller keeps `iovecs` until detach."""
    cdef int rc
    with nogil:
        rc = virgl_renderer_resource_attach_iov(handle, iovecs.iov, iovecs.count)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"attach_iov({handle}) = {rc}")


def detach_iov(uint32_t handle):
    """Drop the resource's backing (virglrenderer hands our array back; its owner, the
    Iovecs object, frees it)."""
    cdef iovec* iov = NULL
    cdef int n = 0
    with nogil:
        virgl_renderer_resource_detach_iov(handle, &iov, &n)


def ctx_attach_resource(uint32_t ctx_id, uint32_t handle):
    with nogil:
        virgl_renderer_ctx_attach_resource(ctx_id, handle)


def ctx_detach_resource(uint32_t ctx_id, uint32_t handle):
    with nogil:
        virgl_renderer_ctx_detach_resource(ctx_id, handle)


def submit_cmd(uint32_t ctx_id, const unsigned char[::1] stream):
    """The command stream (whole dwords) to the context; raises if the renderer
    refused it (a malformed stream may also kill the context)."""
    cdef int ndw = stream.shape[0] // 4
    cdef void* buf = <void*>&stream[0] if stream.shape[0] else NULL
    cdef int rc
    with nogil:
        rc = virgl_renderer_submit_cmd(buf, ctx_id, ndw)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"submit_cmd(ctx {ctx_id}, {ndw} dwords) = {rc}")


cdef void _box(virgl_box* b, box):
    b.x, b.y, b.z, b.w, b.h, b.d = box


def transfer_write(
    uint32_t handle, uint32_t ctx_id, int level, uint32_t stride, uint32_t layer_stride,
    box, uint64_t offset,
):
    """From the resource's attached backing into the resource."""
    cdef virgl_box b
    _box(&b, box)
    cdef int rc
    with nogil:
        rc = virgl_renderer_transfer_write_iov(
            handle, ctx_id, level, stride, layer_stride, &b, offset, NULL, 0
        )
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"transfer_write({handle}) = {rc}")


def transfer_read(
    uint32_t handle, uint32_t ctx_id, uint32_t level, uint32_t stride,
    uint32_t layer_stride, box, uint64_t offset, Iovecs into=None,
):
    """From the resource into its attached backing, or into `into`."""
    cdef virgl_box b
    _box(&b, box)
    cdef iovec* iov = NULL
    cdef int cnt = 0
    if into is not None:
        iov = into.iov
        cnt = into.count
    cdef int rc
    with nogil:
        rc = virgl_renderer_transfer_read_iov(
            handle, ctx_id, level, stride, layer_stride, &b, offset, iov, cnt
        )
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"transfer_read({handle}) = {rc}")


def create_fence(uint32_t fence_id, uint32_t ctx_id):
    cdef int rc
    with nogil:
        rc = virgl_renderer_create_fence(<int>fence_id, ctx_id)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"create_fence({fence_id}) = {rc}")


def context_create_fence(uint32_t ctx_id, uint32_t ring_idx, uint64_t fence_id):
    cdef int rc
    with nogil:
        rc = virgl_renderer_context_create_fence(ctx_id, 0, ring_idx, fence_id)
    if rc != 0:
        raise VirglError(rc if rc > 0 else -rc, f"context_create_fence({ctx_id}) = {rc}")


def resource_info(uint32_t handle):
    """(virgl_format, width, height, depth, flags, tex_id, stride, drm_fourcc), or None
    for a resource virglrenderer does not know (or one without a texture)."""
    cdef virgl_renderer_resource_info info
    memset(&info, 0, sizeof(info))
    if virgl_renderer_resource_get_info(handle, &info) != 0:
        return None
    return (
        info.virgl_format, info.width, info.height, info.depth, info.flags, info.tex_id,
        info.stride, info.drm_fourcc,
    )


def export_texture(uint32_t tex_id):
    """(fd, stride, offset) of a dma-buf of the texture. Only with a render node:
    without one, Mesa's EGL crashes in here (see the README)."""
    cdef int fd = -1, stride = 0, offset = 0
    cdef int rc
    with nogil:
        rc = virgl_renderer_get_fd_for_texture2(tex_id, &fd, &stride, &offset)
    if rc != 0 or fd < 0:
        raise VirglError(rc if rc > 0 else 5, f"get_fd_for_texture2({tex_id}) = {rc}")
    return fd, stride, offset
