"""The cross-domain context type (capset 5): a guest Wayland proxy's connection to the
host compositor through virtio-gpu.

One `CrossDomainContext` per CTX_CREATE with CONTEXT_INIT capset 5. Its SUBMIT_3D
buffers carry the commands of `protocol`; replies go into two guest blobs the guest
attached (the query ring for image requirements, the channel ring for what the
compositor sends). A fence on the channel ring (POLL, ring 1) is the guest asking for
the next event: its SUBMIT_3D's answer is held until the compositor (or a pipe) has
something, then exactly one RECEIVE or READ is written and that one fence signalled, so
the guest reads the ring before the host writes it again. Meanwhile the compositor's
socket and the read pipes are watched on the control queue's worker; with no POLL
pending nothing is watched (an idle daemon sleeps).

Fds are swapped for ids both ways (`items`): the guest names host blobs (memfd-backed,
`crossdomain` allocates them for wl_shm pools and dma-buf-less buffers) and read pipes
it wants; the compositor's keymaps and write pipes become odd ids the guest maps
(CREATE_BLOB with that id) or WRITEs to. Anything malformed fails the context: its
channel is closed, its held fences answered with ERR_UNSPEC, every later command
refused; the daemon and other contexts go on.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vhost_user_core import Worker

from ..blob import Blobs, HostBlob
from ..protocol import BLOB_MEM_HOST3D, FLAG_INFO_RING_IDX, CtrlHeader, Resp
from ..renderer.base import Capset, CommandError
from . import protocol as p
from .channel import ChannelClosed, FdKind, WaylandChannel, classify
from .items import ItemTable, MemoryFd, ReadPipe, Requirements, WritePipe

log = logging.getLogger(__name__)

#: The largest image GET_IMAGE_REQUIREMENTS lays out (one memfd).
MAX_IMAGE_SIZE = 256 << 20
#: Cross-domain contexts one connection may have (each may hold a compositor socket
#: and `items.MAX_FD_ITEMS` fds; a guest runs one proxy per channel).
MAX_CONTEXTS = 8

#: Answers a held SUBMIT_3D: called once, with the response status.
Reply = Callable[[Resp], None]


class ContextFailed(CommandError):
    """The context is unusable from now on (a malformed command, the compositor gone)."""

    def __init__(self, what: str) -> None:
        super().__init__(Resp.ERR_UNSPEC, what)


@dataclass
class HeldFence:
    header: CtrlHeader
    reply: Reply


class CrossDomainContext:
    def __init__(
        self, ctx_id: int, name: str, socket_path: str | None, blobs: Blobs, worker: Worker | None
    ) -> None:
        self.ctx_id = ctx_id
        self.name = name
        self.socket_path = socket_path
        self.blobs = blobs
        self.worker = worker
        self.resources: set[int] = set()
        self.items = ItemTable()
        self.query_ring: int | None = None
        self.channel_ring: int | None = None
        self.channel: WaylandChannel | None = None
        self.failed: str | None = None
        self.held: deque[HeldFence] = deque()
        self._watched: set[int] = set()

    # -- the guest's commands ----------------------------------------------------------

    def submit(self, header: CtrlHeader, buffer: bytes, reply: Reply) -> bool:
        """SUBMIT_3D: run the commands; True if the answer is due now, False if the
        fence is held (`reply` is called when it signals)."""
        if self.failed is not None:
            raise CommandError(Resp.ERR_UNSPEC, f"context {self.ctx_id} failed: {self.failed}")
        ring = self._fence_ring(header)
        try:
            for command in p.parse_commands(buffer):
                self._run(command)
        except (p.CrossDomainProtocolError, ChannelClosed, OSError) as exc:
            self.fail(str(exc))
            raise ContextFailed(f"context {self.ctx_id}: {exc}") from exc
        except ContextFailed as exc:
            self.fail(str(exc))
            raise
        if ring != p.CHANNEL_RING:
            return True
        if self.channel is None:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "a channel-ring fence with no channel")
        self.held.append(HeldFence(header, reply))
        self._watch()
        return False

    def _fence_ring(self, header: CtrlHeader) -> int | None:
        """The ring a fenced command's fence is on (None: global or unfenced)."""
        if not header.fenced or not header.flags & FLAG_INFO_RING_IDX:
            return None
        if header.ring_idx >= p.NUM_RINGS:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no ring {header.ring_idx}")
        return header.ring_idx

    def _run(self, command: p.Command) -> None:
        if isinstance(command, p.Init):
            self._init(command)
        elif self.query_ring is None:
            raise ContextFailed(f"{type(command).__name__} before INIT")
        elif isinstance(command, p.GetImageRequirements):
            self._image_requirements(command)
        elif isinstance(command, p.Send):
            self._send(command)
        elif isinstance(command, p.Write):
            self._write(command)
        # POLL: nothing to do; its fence is the request.

    def _init(self, cmd: p.Init) -> None:
        if self.query_ring is not None:
            raise ContextFailed("INIT twice")
        self._check_ring(cmd.query_ring_id)
        if cmd.channel_type == p.CHANNEL_NONE:
            self.query_ring = cmd.query_ring_id
            return
        if cmd.channel_type != p.CHANNEL_WAYLAND or self.socket_path is None:
            raise ContextFailed(f"channel type {cmd.channel_type} is not offered")
        self._check_ring(cmd.channel_ring_id)
        try:
            self.channel = WaylandChannel(self.socket_path)
        except OSError as exc:
            raise ContextFailed(f"cannot connect to {self.socket_path}: {exc}") from exc
        self.query_ring, self.channel_ring = cmd.query_ring_id, cmd.channel_ring_id
        log.info("context %d (%s) connected to %s", self.ctx_id, self.name, self.socket_path)

    def _check_ring(self, resource_id: int) -> None:
        if resource_id not in self.resources or resource_id not in self.blobs.guest:
            raise ContextFailed(f"ring {resource_id} is no guest blob attached to the context")

    def _image_requirements(self, cmd: p.GetImageRequirements) -> None:
        bpp = p.BYTES_PER_PIXEL.get(cmd.drm_format)
        if bpp is None:
            raise ContextFailed(f"DRM format {cmd.drm_format:#x} has no memfd layout")
        stride = cmd.width * bpp
        size = stride * cmd.height
        if not 0 < size <= MAX_IMAGE_SIZE:
            raise ContextFailed(f"a {cmd.width}x{cmd.height} image of {size} bytes")
        req = Requirements(cmd.width, cmd.height, cmd.drm_format, stride, size)
        blob_id = self.items.add(req)
        answer = p.ImageRequirements(
            (stride, 0, 0, 0), (0, 0, 0, 0), 0, size, blob_id, p.MAP_CACHE_CACHED | p.MAP_ACCESS_RW
        )
        assert self.query_ring is not None
        self._write_ring(self.query_ring, answer.encode())

    def _send(self, cmd: p.Send) -> None:
        if self.channel is None:
            raise ContextFailed("SEND with no channel")
        fds: list[int] = []
        pipe_ends: list[int] = []
        new_pipe: int | None = None
        try:
            for ident in cmd.identifiers:
                if ident.type == p.ID_TYPE_VIRTGPU_BLOB:
                    fds.append(self._blob_fd(ident.id))
                elif ident.type == p.ID_TYPE_READ_PIPE:
                    if new_pipe is not None:
                        raise ContextFailed("more than one read pipe in one SEND")
                    if ident.id != self.items.next_read_pipe():
                        raise ContextFailed(
                            f"read pipe id {ident.id:#x}, {self.items.next_read_pipe():#x} is next"
                        )
                    read_end, write_end = os.pipe2(os.O_CLOEXEC)
                    pipe_ends.append(write_end)
                    os.set_blocking(read_end, False)
                    try:
                        new_pipe = self.items.add(ReadPipe(read_end))
                    except p.CrossDomainProtocolError:
                        os.close(read_end)
                        raise
                    fds.append(write_end)
                else:
                    raise ContextFailed(f"identifier type {ident.type} cannot be sent")
            self.channel.send(cmd.data, fds)
        finally:
            for fd in pipe_ends:  # the compositor has its copy; EOF reaches our read end
                os.close(fd)
        if new_pipe is not None and self.held:
            self._watch()

    def _blob_fd(self, resource_id: int) -> int:
        if resource_id not in self.resources:
            raise ContextFailed(f"resource {resource_id} is not attached to the context")
        blob = self.blobs.host.get(resource_id)
        if blob is None:
            raise ContextFailed(f"resource {resource_id} has no host memory to send")
        return blob.fd

    def _write(self, cmd: p.Write) -> None:
        item = self.items.get(cmd.identifier)
        if not isinstance(item, WritePipe):
            raise ContextFailed(f"WRITE to {cmd.identifier}, which is no write pipe")
        try:
            view = memoryview(cmd.data)
            while view:
                view = view[os.write(item.fd, view) :]
        except OSError as exc:  # full (the compositor does not read) or closed
            log.warning("context %d: pipe %d: %s; closing it", self.ctx_id, cmd.identifier, exc)
            self._close_item(cmd.identifier)
            return
        if cmd.hang_up:
            self._close_item(cmd.identifier)

    def _close_item(self, item_id: int) -> None:
        item = self.items.take(item_id)
        if item is not None and not isinstance(item, Requirements):
            if item.fd in self._watched:
                self._unwatch_fd(item.fd)
            os.close(item.fd)

    def _write_ring(self, resource_id: int, data: bytes) -> None:
        ring = self.blobs.ring(resource_id)
        if len(ring) < len(data):
            raise ContextFailed(f"{len(data)} bytes do not fit ring {resource_id} ({len(ring)})")
        ring[: len(data)] = data

    # -- blobs and resources ---------------------------------------------------------

    def attach(self, resource_id: int) -> None:
        self.resources.add(resource_id)

    def detach(self, resource_id: int) -> None:
        self.resources.discard(resource_id)

    def create_blob(
        self, resource_id: int, blob_mem: int, blob_flags: int, blob_id: int, size: int
    ) -> HostBlob:
        """RESOURCE_CREATE_BLOB HOST3D in this context: an even blob_id allocates a
        memfd of its image requirements' size, an odd one takes the compositor's fd."""
        if self.failed is not None:
            raise CommandError(Resp.ERR_UNSPEC, f"context {self.ctx_id} failed: {self.failed}")
        if blob_mem != BLOB_MEM_HOST3D:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"blob memory {blob_mem} in context")
        item = self.items.get(blob_id) if blob_id < 1 << 32 else None
        if isinstance(item, Requirements):
            if size != item.size:
                raise CommandError(
                    Resp.ERR_INVALID_PARAMETER, f"blob of {size} bytes for {item.size} required"
                )
            self.blobs.reserve(size)
            try:
                fd = os.memfd_create(f"cross-domain-{resource_id}", os.MFD_CLOEXEC)
                os.ftruncate(fd, size)
            except OSError as exc:
                self.blobs.memory_used -= size
                raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"memfd of {size}: {exc}") from exc
            map_info = p.MAP_CACHE_CACHED | p.MAP_ACCESS_RW
        elif isinstance(item, MemoryFd) and blob_id % 2:
            if not 0 < size <= item.size:
                raise CommandError(
                    Resp.ERR_INVALID_PARAMETER, f"blob of {size} bytes on a {item.size}-byte fd"
                )
            self.blobs.reserve(size)
            self.items.take(blob_id)
            fd = item.fd
            map_info = p.MAP_CACHE_CACHED | p.MAP_ACCESS_READ
        else:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no blob item {blob_id}")
        blob = HostBlob(resource_id, fd, size, map_info, blob_flags)
        self.blobs.add_host(blob)
        self.resources.add(resource_id)
        return blob

    # -- waiting for the compositor ------------------------------------------------------

    def _watch(self) -> None:
        """Watch the socket and the read pipes while a POLL is held."""
        if self.worker is None or self.failed is not None:
            return
        wanted: set[int] = set()
        if self.channel is not None:
            wanted.add(self.channel.fileno())
        wanted |= {item.fd for item in self.items.items.values() if isinstance(item, ReadPipe)}
        for fd in wanted - self._watched:
            self.worker.add_reader(fd, functools.partial(self._ready, fd))
            self._watched.add(fd)

    def _unwatch_all(self) -> None:
        for fd in list(self._watched):
            self._unwatch_fd(fd)

    def _unwatch_fd(self, fd: int) -> None:
        if self.worker is not None:
            self.worker.remove_reader(fd)
        self._watched.discard(fd)

    def _ready(self, fd: int) -> None:
        """One event: one ring write, one fence (the oldest) signalled."""
        if not self.held or self.failed is not None:
            self._unwatch_all()
            return
        try:
            if self.channel is not None and fd == self.channel.fileno():
                written = self._receive()
            else:
                written = self._read_pipe(fd)
        except (ChannelClosed, OSError, CommandError, p.CrossDomainProtocolError) as exc:
            self.fail(str(exc))
            return
        if written:
            fence = self.held.popleft()
            fence.reply(Resp.OK_NODATA)
        if not self.held:
            self._unwatch_all()

    def _receive(self) -> bool:
        assert self.channel is not None and self.channel_ring is not None
        data, fds = self.channel.receive()
        if not data and not fds:
            return False
        idents: list[p.Identifier] = []
        try:
            while fds:
                kind, size = classify(fds[0])
                if kind is FdKind.MEMORY:
                    ident = p.Identifier(self.items.add(MemoryFd(fds[0], size)), 1, size)
                elif kind is FdKind.WRITE_PIPE:
                    os.set_blocking(fds[0], False)
                    ident = p.Identifier(self.items.add(WritePipe(fds[0])), p.ID_TYPE_WRITE_PIPE)
                else:
                    raise ContextFailed("the compositor sent an fd that is no memory or write pipe")
                idents.append(ident)
                fds.pop(0)  # the item owns it now
        finally:
            for fd in fds:  # not taken (an error): ours to close
                os.close(fd)
        self._write_ring(self.channel_ring, p.encode_receive(idents, data))
        return True

    def _read_pipe(self, fd: int) -> bool:
        assert self.channel_ring is not None
        pipe_id = next(
            (
                i
                for i, item in self.items.items.items()
                if isinstance(item, ReadPipe) and item.fd == fd
            ),
            None,
        )
        if pipe_id is None:
            self._unwatch_fd(fd)
            return False
        room = min(len(self.blobs.ring(self.channel_ring)) - p.READ_WRITE_SIZE, p.MAX_RECEIVE_DATA)
        try:
            data = os.read(fd, max(room, 0))
        except BlockingIOError:
            return False
        hang_up = not data
        self._write_ring(self.channel_ring, p.encode_read(pipe_id, data, hang_up))
        if hang_up:
            self._close_item(pipe_id)
        return True

    # -- the end ---------------------------------------------------------------------------

    def fail(self, why: str) -> None:
        """The context is unusable: close its channel and answer its held fences."""
        if self.failed is not None:
            return
        log.warning("cross-domain context %d fails: %s", self.ctx_id, why)
        self.failed = why
        self.close()

    def release_fences(self, status: Resp) -> None:
        while self.held:
            self.held.popleft().reply(status)

    def close(self) -> None:
        self._unwatch_all()
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        self.items.close()
        self.release_fences(Resp.ERR_UNSPEC)


class CrossDomain:
    """The cross-domain context type of one connection: capset 5 and its contexts."""

    def __init__(self, socket_path: str, blobs: Blobs) -> None:
        self.socket_path = socket_path
        self.blobs = blobs
        self.worker: Worker | None = None
        self.contexts: dict[int, CrossDomainContext] = {}

    @property
    def capset(self) -> Capset:
        return Capset(p.CAPSET_CROSS_DOMAIN, 0, p.CAPABILITIES.size)

    def get_capset(self, version: int) -> bytes:
        if version > p.CAPSET_VERSION:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"capset 5 version {version}")
        return p.capabilities(1 << p.CHANNEL_WAYLAND)

    def owns(self, ctx_id: int) -> bool:
        return ctx_id in self.contexts

    def create(self, ctx_id: int, name: str) -> None:
        if ctx_id == 0 or ctx_id in self.contexts:
            raise CommandError(Resp.ERR_INVALID_CONTEXT_ID, f"context id {ctx_id} is taken")
        if len(self.contexts) >= MAX_CONTEXTS:
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"more than {MAX_CONTEXTS} contexts")
        self.contexts[ctx_id] = CrossDomainContext(
            ctx_id, name, self.socket_path, self.blobs, self.worker
        )

    def destroy(self, ctx_id: int) -> None:
        self.contexts.pop(ctx_id).close()

    def context(self, ctx_id: int) -> CrossDomainContext:
        ctx = self.contexts.get(ctx_id)
        if ctx is None:
            raise CommandError(Resp.ERR_INVALID_CONTEXT_ID, f"no context {ctx_id}")
        return ctx

    def forget(self, resource_id: int) -> None:
        """The resource is gone: no context may name it any more."""
        for ctx in self.contexts.values():
            ctx.detach(resource_id)

    def release_fences(self) -> None:
        """The control queue stops: answer every held fence while it still can."""
        for ctx in self.contexts.values():
            ctx.release_fences(Resp.OK_NODATA)

    def reset(self) -> None:
        """Device reset or disconnect: the rings are gone, so held fences are dropped
        unanswered (`release_fences` answered them if the queue stopped first)."""
        for ctx in self.contexts.values():
            ctx.held.clear()
            ctx.close()
        self.contexts.clear()
