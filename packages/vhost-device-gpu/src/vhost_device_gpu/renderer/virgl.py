"""The virgl renderer: resources, contexts and fences in virglrenderer (`_virgl`), which
renders the guest's Gallium command streams with the host's GL (llvmpipe through Mesa's
surfaceless EGL where there is no render node).

Threads. virglrenderer is one per process and its GL context is current on the thread
that initialised it, so everything that renders runs on the worker that owns the
control queue: it initialises virglrenderer at its first command and cleans it up when
its loop ends (`Worker.at_exit`), so the next connection's worker starts afresh. The
session thread only detaches guest memory (no GL) on a memory change or a reset; the
reset's GL part waits for the worker.

Fences. A fenced command is answered once virglrenderer signals its fence: we create a
fence (our own sequence number; a per-context-ring one when the guest asked for a ring)
after the command and keep the answer until the callback reports that number or a later
one. The poll eventfd (THREAD_SYNC) is in the worker's epoll, so an idle daemon sleeps.

Contexts come from a per-capset table (`context_types`): capsets 0, 1 and 2 are virgl's
own. The cross-domain context type (capset 5) is not here: the device's router sends
its contexts to `crossdomain` before the renderer sees them.

Blobs: only guest blobs (BLOB_MEM_GUEST), guest pages virglrenderer keeps as the
resource's storage for a context to attach; a virgl context's host3d blob is refused.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from vhost_user_core import GuestMemory, GuestMemoryError, Worker

from .. import _virgl
from ..errors import GpuError
from ..protocol import (
    BLOB_MEM_GUEST,
    BYTES_PER_PIXEL,
    CAPSET_VIRGL,
    CAPSET_VIRGL2,
    CONTEXT_INIT_CAPSET_ID_MASK,
    CURSOR_SIZE,
    FLAG_INFO_RING_IDX,
    RESOURCE_FLAG_Y_0_TOP,
    VIRTIO_GPU_F_CONTEXT_INIT,
    VIRTIO_GPU_F_VIRGL,
    Cmd,
    CtrlHeader,
    CtxCreate,
    CtxResource,
    Format,
    Rect,
    ResourceCreate3D,
    Resp,
    Transfer3D,
    decode_submit,
)
from .base import Capset, CommandError, Context, Dmabuf, Renderer, ScanoutSource
from .twod import CHANNELS, to_argb, to_xrgb

log = logging.getLogger(__name__)

#: Capset names (`-c/--capset`) and ids.
CAPSET_IDS = {"virgl": CAPSET_VIRGL, "virgl2": CAPSET_VIRGL2}
#: Gallium's PIPE_TEXTURE_2D and PIPE_BIND_RENDER_TARGET: what a 2D resource is here.
PIPE_BUFFER, PIPE_TEXTURE_2D = 0, 2
PIPE_BIND_RENDER_TARGET = 1 << 1
#: Host memory the guest's resources may take, estimated from their sizes (textures
#: live in the host's GL; a guest must not be able to exhaust it).
MAX_HOSTMEM = 1 << 30
RESOURCE_OVERHEAD = 1024
#: Without THREAD_SYNC's eventfd, how often pending fences are polled.
POLL_INTERVAL = 0.002


@dataclass(frozen=True)
class VirglOptions:
    """The renderer's flags (`--use-egl` ...) and render node, as the CLI gives them."""

    use_egl: bool = True
    use_gles: bool = True
    use_surfaceless: bool = True
    use_glx: bool = False
    gpu_device: str | None = None
    capsets: tuple[str, ...] = ()

    @property
    def flags(self) -> int:
        flags = _virgl.THREAD_SYNC
        if self.use_egl:
            flags |= _virgl.USE_EGL
        if self.use_glx:
            flags |= _virgl.USE_GLX
        if self.use_gles:
            flags |= _virgl.USE_GLES
        if self.use_surfaceless:
            flags |= _virgl.USE_SURFACELESS
        return flags


class VirglInitError(GpuError):
    """virglrenderer cannot start with these flags on this host (at start-up: one line,
    exit 1)."""


def _virgl_log(text: str) -> None:
    log.info("virglrenderer: %s", text)


_virgl.set_log_sink(_virgl_log)
#: The probe's results, per (flags, render node): the capsets virglrenderer has.
_probed: dict[tuple[int, str | None], list[Capset]] = {}
_probe_lock = threading.Lock()


#: Linux's DRM character device major.
DRM_MAJOR = 226


def _open_device(path: str | None) -> int:
    """The render node, checked to be a DRM device: with anything else virglrenderer
    falls back to surfaceless EGL, where the dma-buf export crashes."""
    if path is None:
        return -1
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise VirglInitError(f"--gpu-device {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or os.major(st.st_rdev) != DRM_MAJOR:
        os.close(fd)
        raise VirglInitError(f"--gpu-device {path}: not a DRM render node")
    return fd


def _init(options: VirglOptions) -> int:
    """virgl_renderer_init on this thread; the render node's fd (or -1), kept open
    while it runs (virglrenderer gets its own duplicate)."""
    fd = _open_device(options.gpu_device)
    try:
        _virgl.init(options.flags, fd)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        hint = "" if options.use_surfaceless else " (without a render node, --use-surfaceless)"
        raise VirglInitError(
            f"virglrenderer cannot start with flags {options.flags:#x}{hint}: {exc}"
        ) from None
    return fd


def probe(options: VirglOptions) -> list[Capset]:
    """The capsets virglrenderer offers with these options (of those `-c` names, all
    if none), found once per process on a thread of its own (init, query, cleanup):
    the daemon checks its flags before it listens, and the config space needs the
    capset count before any renderer runs."""
    key = (options.flags, options.gpu_device)
    with _probe_lock:
        if key not in _probed:
            result: list[list[Capset] | BaseException] = []

            def run() -> None:
                try:
                    fd = _init(options)
                    try:
                        found = []
                        for cid in (CAPSET_VIRGL, CAPSET_VIRGL2):
                            version, size = _virgl.get_cap_set(cid)
                            if version > 0 and size > 0:
                                found.append(Capset(cid, version, size))
                    finally:
                        _virgl.cleanup()
                        if fd >= 0:
                            os.close(fd)
                    result.append(found)
                except BaseException as exc:
                    result.append(exc)

            thread = threading.Thread(target=run, name="virgl-probe")
            thread.start()
            thread.join()
            if isinstance(result[0], BaseException):
                raise result[0]
            _probed[key] = result[0]
        found = _probed[key]
    wanted = {CAPSET_IDS[name] for name in options.capsets} or set(CAPSET_IDS.values())
    return [c for c in found if c.capset_id in wanted]


def estimate(
    target: int, width: int, height: int, depth: int, array_size: int, last_level: int,
    nr_samples: int,
) -> int:  # fmt: skip
    """Host bytes a resource may take: a buffer its width; a texture 4 bytes a texel
    (the common formats; 16-byte ones are rare), every layer and sample, and a third
    more with mipmaps."""
    if target == PIPE_BUFFER:
        return width
    texels = width * height * max(depth, 1) * max(array_size, 1) * max(nr_samples, 1)
    return texels * 4 * (4 if last_level else 3) // 3


def _status(exc: OSError) -> Resp:
    """virglrenderer's errno as the guest's status: EINVAL is a bad parameter."""
    return Resp.ERR_INVALID_PARAMETER if exc.errno == 22 else Resp.ERR_UNSPEC


@dataclass
class Resource:
    resource_id: int
    format: int
    width: int
    height: int
    depth: int
    cost: int
    entries: tuple[tuple[int, int], ...] | None = None
    iovecs: _virgl.Iovecs | None = None
    contexts: set[int] = field(default_factory=set)
    uuid: bytes | None = None
    blob: bool = False  # a guest blob: no texture, its storage is the guest's pages


class VirglContext(Context):
    """A context of virgl's own (capset 0, VIRGL or VIRGL2): a Gallium command stream
    that virglrenderer decodes and renders."""

    def __init__(self, ctx_id: int, context_init: int, name: bytes) -> None:
        self.ctx_id = ctx_id
        self.context_init = context_init
        try:
            _virgl.context_create(ctx_id, context_init, name)
        except OSError as exc:
            raise CommandError(
                Resp.ERR_INVALID_CONTEXT_ID if exc.errno == 17 else _status(exc),
                f"context {ctx_id}: {exc}",
            ) from None

    def submit(self, stream: memoryview) -> None:
        if len(stream) % 4:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"a {len(stream)}-byte stream is not whole dwords"
            )
        try:
            _virgl.submit_cmd(self.ctx_id, stream)
        except OSError as exc:
            # A stream virglrenderer cannot decode is refused; one that breaks its
            # rules (an object that does not exist) kills the context, whose every
            # later stream is refused: the guest hears of it in each answer.
            raise CommandError(
                Resp.ERR_UNSPEC, f"context {self.ctx_id}: the renderer refused the stream: {exc}"
            ) from None

    def attach(self, resource_id: int) -> None:
        _virgl.ctx_attach_resource(self.ctx_id, resource_id)

    def detach(self, resource_id: int) -> None:
        _virgl.ctx_detach_resource(self.ctx_id, resource_id)

    def create_fence(self, ring_idx: int, seq: int) -> None:
        _virgl.context_create_fence(self.ctx_id, ring_idx, seq)

    def destroy(self) -> None:
        _virgl.context_destroy(self.ctx_id)


#: What CTX_CREATE builds, by the capset id in context_init's low byte (0: none given,
#: the classic virgl context): (ctx_id, context_init, debug name) -> the context.
ContextFactory = Callable[[int, int, bytes], Context]


@dataclass
class PendingFence:
    seq: int
    complete: Callable[[], None]
    ring: tuple[int, int] | None  # (ctx, ring index), or None for a global fence


class VirglRenderer(Renderer):
    name = "virglrenderer"
    features = VIRTIO_GPU_F_VIRGL | VIRTIO_GPU_F_CONTEXT_INIT

    def __init__(self, options: VirglOptions, *, max_hostmem: int = MAX_HOSTMEM) -> None:
        self.options = options
        self._capsets = probe(options)
        self.max_hostmem = max_hostmem
        self.hostmem = 0
        self.memory = GuestMemory()
        self.resources: dict[int, Resource] = {}
        self.contexts: dict[int, Context] = {}
        self.context_types: dict[int, ContextFactory] = {
            0: VirglContext,
            **{c.capset_id: VirglContext for c in self._capsets},
        }
        self.pending: list[PendingFence] = []
        self._seq = 0
        self._owner: int | None = None  # the thread virglrenderer is current on
        self._worker: Worker | None = None
        self._device_fd = -1
        self._poll_fd = -1
        self._poll_timer: object | None = None
        self._reset_pending = False
        self._export_failed = False
        self._handlers: dict[int, Callable[[CtrlHeader, bytes], bytes | None]] = {
            Cmd.CTX_CREATE: self._ctx_create,
            Cmd.CTX_DESTROY: self._ctx_destroy,
            Cmd.CTX_ATTACH_RESOURCE: self._ctx_attach,
            Cmd.CTX_DETACH_RESOURCE: self._ctx_detach,
            Cmd.RESOURCE_CREATE_3D: self._create_3d,
            Cmd.TRANSFER_TO_HOST_3D: self._transfer_to_host_3d,
            Cmd.TRANSFER_FROM_HOST_3D: self._transfer_from_host_3d,
            Cmd.SUBMIT_3D: self._submit_3d,
        }

    # -- the renderer's thread ---------------------------------------------------------

    def attach(self, worker: Worker) -> None:
        """The worker that owns the control queue: virglrenderer runs on its thread."""
        self._worker = worker
        worker.at_exit(self._shutdown)
        if self._poll_fd >= 0:  # already running (a renderer kept across workers)
            worker.add_reader(self._poll_fd, self.poll)

    def _ready(self) -> None:
        """Called at every entry that renders: start virglrenderer on this thread the
        first time, apply a reset the session thread asked for, back to context 0."""
        if self._owner is None:
            if _virgl.initialised():
                raise CommandError(Resp.ERR_UNSPEC, "virglrenderer is in use by another connection")
            self._start()
        elif self._owner != threading.get_ident():
            raise CommandError(Resp.ERR_UNSPEC, "virglrenderer is bound to another thread")
        if self._reset_pending:
            # virgl_renderer_reset would do, but it ends THREAD_SYNC's thread for good
            # (fences then signal only when polled): virglrenderer starts afresh instead.
            self._reset_pending = False
            self._stop()
            self._start()
        _virgl.force_ctx_0()

    def _start(self) -> None:
        try:
            self._device_fd = _init(self.options)
        except VirglInitError as exc:  # it started at the probe: the host changed since
            raise CommandError(Resp.ERR_UNSPEC, str(exc)) from None
        self._owner = threading.get_ident()
        self._poll_fd = _virgl.poll_fd()
        if self._poll_fd >= 0 and self._worker is not None:
            self._worker.add_reader(self._poll_fd, self.poll)
        log.info("virglrenderer started (flags %#x, poll fd %d)", self.options.flags, self._poll_fd)

    def _stop(self) -> None:
        if self._poll_fd >= 0 and self._worker is not None:
            self._worker.remove_reader(self._poll_fd)
        self._poll_fd = -1
        _virgl.cleanup()
        if self._device_fd >= 0:
            os.close(self._device_fd)
            self._device_fd = -1
        self._owner = None

    def _shutdown(self) -> None:
        """On the worker's thread as its loop ends: virglrenderer is cleaned up where it
        is current, so the next connection can start it on its own worker."""
        if self._owner is None or self._owner != threading.get_ident():
            return
        for res in self.resources.values():
            if res.iovecs is not None:
                _virgl.detach_iov(res.resource_id)
        self.resources.clear()
        self.contexts.clear()
        self.pending.clear()
        self._stop()
        log.info("virglrenderer cleaned up")

    # -- fences --------------------------------------------------------------------

    def defer_fence(self, header: CtrlHeader, complete: Callable[[], None]) -> bool:
        if self._owner is None:
            return False  # nothing ran in virglrenderer yet: nothing to wait for
        try:
            self._ready()  # a reset asked for is applied first; fences are made in context 0
        except CommandError as exc:
            log.warning("fence %d: %s; answered at once", header.fence_id, exc)
            return False
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        ctx = self.contexts.get(header.ctx_id)
        ring = None
        try:
            if header.flags & FLAG_INFO_RING_IDX and ctx is not None and ctx.context_init:
                ring = (header.ctx_id, header.ring_idx)
                ctx.create_fence(header.ring_idx, self._seq)
            else:
                _virgl.create_fence(self._seq, header.ctx_id)
        except OSError as exc:
            log.warning("fence %d: %s; answered at once", header.fence_id, exc)
            return False
        self.pending.append(PendingFence(self._seq, complete, ring))
        if self._poll_fd < 0 and self._poll_timer is None and self._worker is not None:
            self._poll_timer = self._worker.call_later(POLL_INTERVAL, self._poll_tick)
        return True

    def _poll_tick(self) -> None:
        self._poll_timer = None
        self.poll()
        if self.pending and self._worker is not None:
            self._poll_timer = self._worker.call_later(POLL_INTERVAL, self._poll_tick)

    def poll(self) -> None:
        """virglrenderer's fences that have signalled: their commands are answered."""
        if self._owner != threading.get_ident():
            return
        _virgl.poll()
        signalled, rings = _virgl.take_fences()
        if not signalled and not rings:
            return
        top = max(signalled, default=-1)
        ring_top: dict[tuple[int, int], int] = {}
        for ctx_id, ring_idx, seq in rings:
            key = (ctx_id, ring_idx)
            ring_top[key] = max(ring_top.get(key, -1), seq)
        self._complete(lambda f: f.seq <= (top if f.ring is None else ring_top.get(f.ring, -1)))

    def _complete(self, signalled: Callable[[PendingFence], bool]) -> None:
        done = [f for f in self.pending if signalled(f)]
        if done:
            self.pending = [f for f in self.pending if not signalled(f)]
            for fence in done:
                fence.complete()

    def _release_ring_fences(self, ctx_id: int) -> None:
        """A destroyed context's ring fences never signal: answer them now."""
        self._complete(lambda f: f.ring is not None and f.ring[0] == ctx_id)

    # -- capsets ---------------------------------------------------------------------

    def capsets(self) -> list[Capset]:
        return list(self._capsets)

    def get_capset(self, capset_id: int, version: int) -> bytes:
        for c in self._capsets:
            if c.capset_id == capset_id:
                break
        else:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no capset {capset_id}")
        if version > c.max_version:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"capset {capset_id} version {version} (at most {c.max_version})",
            )
        self._ready()
        return _virgl.fill_caps(capset_id, version, c.max_size)

    # -- lookups ---------------------------------------------------------------------

    def has_resource(self, resource_id: int) -> bool:
        return resource_id in self.resources

    def has_context(self, ctx_id: int) -> bool:
        return ctx_id in self.contexts

    def _get(self, resource_id: int) -> Resource:
        res = self.resources.get(resource_id)
        if res is None:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"no resource {resource_id}")
        return res

    def _ctx(self, ctx_id: int) -> Context:
        ctx = self.contexts.get(ctx_id)
        if ctx is None:
            raise CommandError(Resp.ERR_INVALID_CONTEXT_ID, f"no context {ctx_id}")
        return ctx

    def _create(
        self, resource_id: int, target: int, format: int, bind: int, width: int, height: int,
        depth: int, array_size: int, last_level: int, nr_samples: int, flags: int,
    ) -> None:  # fmt: skip
        self._new_id(resource_id)
        if width == 0 or height == 0:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"empty resource {width}x{height}")
        cost = RESOURCE_OVERHEAD + estimate(target, width, height, depth, array_size,
                                            last_level, nr_samples)  # fmt: skip
        self._charge(resource_id, cost)
        self._ready()
        try:
            _virgl.resource_create(
                resource_id, target, format, bind, width, height, depth, array_size,
                last_level, nr_samples, flags,
            )  # fmt: skip
        except OSError as exc:
            raise CommandError(_status(exc), f"resource {resource_id}: {exc}") from None
        self.hostmem += cost
        self.resources[resource_id] = Resource(resource_id, format, width, height, depth, cost)

    def _new_id(self, resource_id: int) -> None:
        if resource_id == 0 or resource_id in self.resources:
            raise CommandError(
                Resp.ERR_INVALID_RESOURCE_ID,
                f"resource id {resource_id} is {'reserved' if resource_id == 0 else 'in use'}",
            )

    def _charge(self, resource_id: int, cost: int) -> None:
        if self.hostmem + cost > self.max_hostmem:
            raise CommandError(
                Resp.ERR_OUT_OF_MEMORY,
                f"resource {resource_id} would pass the {self.max_hostmem}-byte host limit",
            )

    # -- the 2D commands on virglrenderer's resources ----------------------------------

    def memory_changed(self, memory: GuestMemory) -> None:
        """New guest memory table: every backing is detached and looked up again (no GL:
        this runs on the session thread)."""
        self.memory = memory
        for res in self.resources.values():
            if res.entries is None:
                continue
            if res.iovecs is not None:
                _virgl.detach_iov(res.resource_id)
                res.iovecs = None
            try:
                res.iovecs = self._iovecs(res.entries)
                _virgl.attach_iov(res.resource_id, res.iovecs)
            except (CommandError, OSError) as exc:
                log.warning("resource %d lost its backing: %s", res.resource_id, exc)
                res.iovecs = None

    def _iovecs(self, entries: tuple[tuple[int, int], ...]) -> _virgl.Iovecs:
        try:
            return _virgl.Iovecs(self.memory.view(a, n) for a, n in entries if n)
        except GuestMemoryError as exc:
            raise CommandError(Resp.ERR_UNSPEC, f"backing outside guest memory: {exc}") from exc

    def create_2d(self, resource_id: int, format: int, width: int, height: int) -> None:
        if format not in CHANNELS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"unknown format {format}")
        self._create(
            resource_id, PIPE_TEXTURE_2D, format, PIPE_BIND_RENDER_TARGET, width, height, 1, 1,
            0, 0, RESOURCE_FLAG_Y_0_TOP,
        )  # fmt: skip

    def create_blob(
        self, resource_id: int, blob_mem: int, blob_flags: int, size: int,
        entries: tuple[tuple[int, int], ...],
    ) -> None:  # fmt: skip
        """A guest blob over its guest pages (kept mapped like an attached backing, and
        looked up again on a memory change); no context is needed to make one."""
        if blob_mem != BLOB_MEM_GUEST:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"blob_mem {blob_mem}: a virgl context's host blobs are not served, "
                "only guest blobs",
            )
        self._new_id(resource_id)
        if size == 0 or sum(n for _, n in entries) < size:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"a {size}-byte blob needs entries of that size"
            )
        self._charge(resource_id, RESOURCE_OVERHEAD)
        iovecs = self._iovecs(entries)
        self._ready()
        try:
            _virgl.resource_create_guest_blob(resource_id, blob_flags, size, iovecs)
        except OSError as exc:
            raise CommandError(_status(exc), f"blob {resource_id}: {exc}") from None
        self.hostmem += RESOURCE_OVERHEAD
        self.resources[resource_id] = Resource(
            resource_id, 0, 0, 0, 0, RESOURCE_OVERHEAD, entries, iovecs, blob=True
        )

    def unref(self, resource_id: int) -> None:
        res = self._get(resource_id)
        self._ready()
        for ctx_id in res.contexts:
            ctx = self.contexts.get(ctx_id)
            if ctx is not None:
                ctx.detach(resource_id)
        if res.iovecs is not None:
            _virgl.detach_iov(resource_id)
        _virgl.resource_unref(resource_id)
        del self.resources[resource_id]
        self.hostmem -= res.cost

    def attach_backing(self, resource_id: int, entries: tuple[tuple[int, int], ...]) -> None:
        res = self._get(resource_id)
        if res.entries is not None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id} already has backing")
        iovecs = self._iovecs(entries)
        try:
            _virgl.attach_iov(resource_id, iovecs)
        except OSError as exc:
            raise CommandError(_status(exc), f"resource {resource_id}: {exc}") from None
        res.entries, res.iovecs = entries, iovecs

    def detach_backing(self, resource_id: int) -> None:
        res = self._get(resource_id)
        self._not_blob(res, "detach backing")
        if res.entries is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {resource_id} has no backing")
        if res.iovecs is not None:
            _virgl.detach_iov(resource_id)
        res.entries = res.iovecs = None

    def _not_blob(self, res: Resource, what: str) -> None:
        if res.blob:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"{what}: resource {res.resource_id} is a guest blob (its pages are its storage)",
            )

    def _backed(self, res: Resource) -> None:
        if res.entries is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {res.resource_id} has no backing")
        if res.iovecs is None:
            raise CommandError(Resp.ERR_UNSPEC, f"resource {res.resource_id}'s backing is unmapped")

    def transfer_to_host_2d(self, resource_id: int, rect: Rect, offset: int) -> None:
        res = self._get(resource_id)
        self._not_blob(res, "transfer")
        self._backed(res)
        if not rect.inside(res.width, res.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"{rect} outside the {res.width}x{res.height} resource"
            )
        self._ready()
        box = (rect.x, rect.y, 0, rect.width, rect.height, 1)
        try:
            _virgl.transfer_write(resource_id, 0, 0, 0, 0, box, offset)
        except OSError as exc:
            raise CommandError(_status(exc), f"transfer to resource {resource_id}: {exc}") from None

    def check_flush(self, resource_id: int, rect: Rect) -> None:
        res = self._get(resource_id)
        if not rect.inside(res.width, res.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"{rect} outside the {res.width}x{res.height} resource"
            )

    def check_scanout(self, source: ScanoutSource, rect: Rect) -> None:
        res = self._get(source.resource_id)
        self._not_blob(res, "scanout")
        if source.format is not None:
            raise CommandError(Resp.ERR_UNSPEC, "SET_SCANOUT_BLOB of a virgl resource")
        if rect.empty or not rect.inside(res.width, res.height):
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"scanout {rect} of the {res.width}x{res.height} resource",
            )
        if res.format not in CHANNELS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"format {res.format} cannot be shown")

    def read_pixels(self, source: ScanoutSource, rect: Rect, dst: memoryview) -> None:
        """The rectangle read back from virglrenderer into `dst` (rows top-down: it
        flips a Y_0_TOP resource as it reads), then into x8r8g8b8."""
        res = self._get(source.resource_id)
        self._ready()
        box = (rect.x, rect.y, 0, rect.width, rect.height, 1)
        try:
            _virgl.transfer_read(
                res.resource_id, 0, 0, rect.width * BYTES_PER_PIXEL, 0, box, 0,
                _virgl.Iovecs([dst]),
            )  # fmt: skip
        except OSError as exc:
            log.warning("scanout read-back of resource %d: %s", res.resource_id, exc)
            dst[:] = bytes(len(dst))
            return
        to_xrgb(dst, res.format)

    def export_scanout(self, source: ScanoutSource) -> Dmabuf | None:
        """A dma-buf of the resource's texture, only with a render node (`--gpu-device`):
        without one, Mesa's surfaceless EGL crashes inside the export (a NULL call in
        libEGL_mesa, seen with 0.10.4 and Mesa 22.3), so the pixels are read back. A
        failed export falls back to reading back too."""
        if self.options.gpu_device is None or self._export_failed:
            return None
        res = self._get(source.resource_id)
        self._ready()
        info = _virgl.resource_info(res.resource_id)
        if info is None or not info[5]:
            return None
        _format, width, height, _depth, flags, tex_id, _stride, fourcc = info
        try:
            fd, stride, _offset = _virgl.export_texture(tex_id)
        except OSError as exc:
            log.warning("no dma-buf export (%s): scanouts are read back from now on", exc)
            self._export_failed = True
            return None
        return Dmabuf(fd, width, height, stride, fourcc, flags & RESOURCE_FLAG_Y_0_TOP)

    def cursor_image(self, resource_id: int) -> bytes:
        res = self._get(resource_id)
        if (res.width, res.height) != (CURSOR_SIZE, CURSOR_SIZE) or res.format not in CHANNELS:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER,
                f"a cursor is {CURSOR_SIZE}x{CURSOR_SIZE}, resource {resource_id} is not",
            )
        image = bytearray(CURSOR_SIZE * CURSOR_SIZE * BYTES_PER_PIXEL)
        self.read_pixels(
            ScanoutSource(resource_id, CURSOR_SIZE, CURSOR_SIZE),
            Rect(0, 0, CURSOR_SIZE, CURSOR_SIZE),
            memoryview(image),
        )
        # read_pixels left x8r8g8b8; the cursor wants real alpha (opaque for X formats)
        to_argb_from_xrgb(image, res.format)
        return bytes(image)

    def assign_uuid(self, resource_id: int) -> bytes:
        res = self._get(resource_id)
        if res.uuid is None:
            res.uuid = uuid.uuid4().bytes
        return res.uuid

    # -- the 3D commands -------------------------------------------------------------

    def handle_3d(self, header: CtrlHeader, data: bytes) -> bytes:
        handler = self._handlers.get(header.type)
        if handler is None:
            raise CommandError(
                Resp.ERR_UNSPEC, f"command {header.type:#x} is not served by virglrenderer"
            )
        answer = handler(header, data)
        return answer if answer is not None else header.response(Resp.OK_NODATA).encode()

    def _ctx_create(self, header: CtrlHeader, data: bytes) -> None:
        cmd = CtxCreate.decode(data)
        if header.ctx_id == 0 or header.ctx_id in self.contexts:
            raise CommandError(
                Resp.ERR_INVALID_CONTEXT_ID,
                f"context id {header.ctx_id} is {'reserved' if header.ctx_id == 0 else 'in use'}",
            )
        capset = cmd.context_init & CONTEXT_INIT_CAPSET_ID_MASK
        factory = self.context_types.get(capset)
        if factory is None:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no context type for capset {capset}")
        self._ready()
        self.contexts[header.ctx_id] = factory(header.ctx_id, cmd.context_init, cmd.debug_name)

    def _ctx_destroy(self, header: CtrlHeader, _data: bytes) -> None:
        ctx = self._ctx(header.ctx_id)
        self._ready()
        ctx.destroy()
        del self.contexts[header.ctx_id]
        for res in self.resources.values():
            res.contexts.discard(header.ctx_id)
        self._release_ring_fences(header.ctx_id)

    def _ctx_attach(self, header: CtrlHeader, data: bytes) -> None:
        cmd = CtxResource.decode(data)
        ctx = self._ctx(header.ctx_id)
        res = self._get(cmd.resource_id)
        self._ready()
        ctx.attach(res.resource_id)
        res.contexts.add(ctx.ctx_id)

    def _ctx_detach(self, header: CtrlHeader, data: bytes) -> None:
        cmd = CtxResource.decode(data)
        ctx = self._ctx(header.ctx_id)
        res = self._get(cmd.resource_id)
        if ctx.ctx_id not in res.contexts:
            raise CommandError(
                Resp.ERR_INVALID_RESOURCE_ID,
                f"resource {res.resource_id} is not attached to context {ctx.ctx_id}",
            )
        self._ready()
        ctx.detach(res.resource_id)
        res.contexts.discard(ctx.ctx_id)

    def _create_3d(self, _header: CtrlHeader, data: bytes) -> None:
        c = ResourceCreate3D.decode(data)
        self._create(
            c.resource_id, c.target, c.format, c.bind, c.width, c.height, c.depth,
            c.array_size, c.last_level, c.nr_samples, c.flags,
        )  # fmt: skip

    def _transfer_3d(self, header: CtrlHeader, data: bytes, write: bool) -> None:
        t = Transfer3D.decode(data)
        res = self._get(t.resource_id)
        self._not_blob(res, "transfer")
        if header.ctx_id:
            self._ctx(header.ctx_id)
        self._backed(res)
        self._ready()
        try:
            if write:
                _virgl.transfer_write(
                    t.resource_id, header.ctx_id, t.level, t.stride, t.layer_stride,
                    t.box.astuple(), t.offset,
                )  # fmt: skip
            else:
                _virgl.transfer_read(
                    t.resource_id, header.ctx_id, t.level, t.stride, t.layer_stride,
                    t.box.astuple(), t.offset,
                )  # fmt: skip
        except OSError as exc:
            raise CommandError(
                _status(exc), f"transfer of resource {t.resource_id}: {exc}"
            ) from None

    def _transfer_to_host_3d(self, header: CtrlHeader, data: bytes) -> None:
        self._transfer_3d(header, data, write=True)

    def _transfer_from_host_3d(self, header: CtrlHeader, data: bytes) -> None:
        self._transfer_3d(header, data, write=False)

    def _submit_3d(self, header: CtrlHeader, data: bytes) -> None:
        stream = decode_submit(data)
        ctx = self._ctx(header.ctx_id)
        self._ready()
        ctx.submit(stream)

    # -- lifetime --------------------------------------------------------------------

    def reset(self) -> None:
        """Device reset, on the session thread: guest memory is let go of now; the GL
        side (virglrenderer started afresh) runs on the worker before its next command."""
        for res in self.resources.values():
            if res.iovecs is not None:
                _virgl.detach_iov(res.resource_id)
        self.resources.clear()
        self.contexts.clear()
        self.pending.clear()
        self.hostmem = 0
        if self._owner is not None:
            self._reset_pending = True

    def close(self) -> None:
        """The worker's exit handler has cleaned virglrenderer up; only guest memory is
        left to let go of here."""
        for res in self.resources.values():
            if res.iovecs is not None and self._owner is not None:
                _virgl.detach_iov(res.resource_id)
        self.resources.clear()


def to_argb_from_xrgb(image: bytearray, format: int) -> None:
    """x8r8g8b8 (as read_pixels leaves it) into A8R8G8B8, alpha kept for an A format
    and opaque for an X one."""
    if CHANNELS[format][4]:
        # x8r8g8b8 is B8G8R8X8 in memory order: with opaque alpha, A8R8G8B8
        to_argb(memoryview(image), Format.B8G8R8X8_UNORM)
    # an A format: read_pixels' swizzle kept its alpha where A8R8G8B8 has it
