"""The renderer interface the device drives: resources, backing, transfers and the
pixels a scanout or the cursor shows. A renderer raises `CommandError` with the spec's
status for a command it refuses; the device turns that into the response.

The 2D renderer implements every method; a 3D renderer (virglrenderer, cross-domain)
adds capsets, feature bits and `handle_3d` for the context commands.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from vhost_user_core import GuestMemory, Worker

from ..errors import GpuError
from ..protocol import CtrlHeader, Rect, Resp


class CommandError(GpuError):
    """A command the renderer refuses: answered with `status`, the daemon goes on."""

    def __init__(self, status: Resp, what: str) -> None:
        super().__init__(what)
        self.status = status


@dataclass(frozen=True)
class Capset:
    """One GET_CAPSET_INFO answer."""

    capset_id: int
    max_version: int
    max_size: int


@dataclass(frozen=True)
class ScanoutSource:
    """Where a scanout's pixels come from: a resource, and for a blob scanout
    (SET_SCANOUT_BLOB) the layout the guest gave; None fields mean the resource's own."""

    resource_id: int
    width: int
    height: int
    format: int | None = None
    stride: int | None = None
    offset: int = 0


class Context(abc.ABC):
    """A rendering context (CTX_CREATE): what the guest submits to, with resources
    attached and fences on its rings. A 3D renderer makes one per CTX_CREATE from a
    table keyed by the capset id in context_init (virgl's: 0, 1, 2)."""

    ctx_id: int
    context_init: int

    @abc.abstractmethod
    def submit(self, stream: memoryview) -> None:
        """SUBMIT_3D's stream; raises CommandError if it is refused."""

    @abc.abstractmethod
    def attach(self, resource_id: int) -> None: ...

    @abc.abstractmethod
    def detach(self, resource_id: int) -> None: ...

    @abc.abstractmethod
    def create_fence(self, ring_idx: int, seq: int) -> None:
        """A fence on one of its rings, after everything submitted so far (the renderer
        answers the fenced command once the ring reports `seq` signalled)."""

    @abc.abstractmethod
    def destroy(self) -> None: ...


@dataclass(frozen=True)
class Dmabuf:
    """A resource exported for a scanout: the fd is the caller's to close."""

    fd: int
    width: int
    height: int
    stride: int
    fourcc: int
    flags: int  # RESOURCE_FLAG_Y_0_TOP when row 0 is the top
    modifier: int | None = None


class Renderer(abc.ABC):
    """One connection's resources. Runs on the worker that owns the control queue."""

    #: The mode name (`-g/--gpu-mode`).
    name: ClassVar[str]
    #: virtio-gpu feature bits this renderer makes real (VIRGL, CONTEXT_INIT, ...).
    features: ClassVar[int] = 0

    def capsets(self) -> list[Capset]:
        """The capsets GET_CAPSET_INFO enumerates, by index (none for 2D)."""
        return []

    def get_capset(self, capset_id: int, version: int) -> bytes:
        raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no capset {capset_id}")

    def has_resource(self, resource_id: int) -> bool:
        """Whether the id names one of this renderer's resources (the device keeps
        host blobs of its own and must not hand out the same id twice)."""
        return False

    def has_context(self, ctx_id: int) -> bool:
        """Whether the id names one of this renderer's contexts (the device's router
        keeps cross-domain contexts apart and must not let one id name two)."""
        return False

    def attach(self, worker: Worker) -> None:
        """The worker that owns the control queue (where every command but the session
        thread's reset and memory changes runs): a renderer watches its fds there."""
        return None

    def defer_fence(self, header: CtrlHeader, complete: Callable[[], None]) -> bool:
        """A fenced command succeeded: True if the renderer holds its answer until the
        fence signals (then it calls `complete`); False to answer now (2D: all work is
        done by the time the command returns)."""
        return False

    def export_scanout(self, source: ScanoutSource) -> Dmabuf | None:
        """The resource as a dma-buf for QEMU to show, or None: its pixels are read back
        (`read_pixels`) instead. Only where export is known to work."""
        return None

    def handle_3d(self, header: CtrlHeader, data: bytes) -> bytes:
        """A context (3D) command; the 2D renderer has no contexts."""
        raise CommandError(Resp.ERR_UNSPEC, f"command {header.type:#x} needs a 3D renderer")

    @abc.abstractmethod
    def memory_changed(self, memory: GuestMemory) -> None:
        """The guest's memory table; backings are looked up in it again."""

    @abc.abstractmethod
    def create_2d(self, resource_id: int, format: int, width: int, height: int) -> None: ...

    @abc.abstractmethod
    def create_blob(
        self, resource_id: int, blob_mem: int, blob_flags: int, size: int,
        entries: tuple[tuple[int, int], ...],
    ) -> None: ...  # fmt: skip

    @abc.abstractmethod
    def unref(self, resource_id: int) -> None: ...

    @abc.abstractmethod
    def attach_backing(self, resource_id: int, entries: tuple[tuple[int, int], ...]) -> None: ...

    @abc.abstractmethod
    def detach_backing(self, resource_id: int) -> None: ...

    @abc.abstractmethod
    def transfer_to_host_2d(self, resource_id: int, rect: Rect, offset: int) -> None: ...

    @abc.abstractmethod
    def check_flush(self, resource_id: int, rect: Rect) -> None:
        """RESOURCE_FLUSH's checks: the resource exists and `rect` lies inside it."""

    @abc.abstractmethod
    def check_scanout(self, source: ScanoutSource, rect: Rect) -> None:
        """SET_SCANOUT(_BLOB)'s checks: the resource (and blob layout) can show `rect`."""

    @abc.abstractmethod
    def read_pixels(self, source: ScanoutSource, rect: Rect, dst: memoryview) -> None:
        """`rect` of the source (resource coordinates) as x8r8g8b8 rows, width x 4
        bytes apart, into `dst`."""

    @abc.abstractmethod
    def cursor_image(self, resource_id: int) -> bytes:
        """The resource as a 64x64 A8R8G8B8 cursor image."""

    @abc.abstractmethod
    def assign_uuid(self, resource_id: int) -> bytes:
        """RESOURCE_ASSIGN_UUID: the resource's 16-byte UUID, the same every time."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop every resource (device reset)."""

    def close(self) -> None:
        self.reset()
