"""The device: virtio-gpu's control and cursor queues, the scanouts, and the dispatch of
each command to the renderer (resources, pixels) or the display (what QEMU shows).

Every command is answered: a short or unknown one with ERR_UNSPEC, a refused one with
the status its `CommandError` carries; nothing the guest sends ends the daemon. All 2D
work is synchronous, so a fenced command is answered at once with its fence echoed
(QEMU's rule for 2D); the virgl renderer holds a fenced answer (written, not yet
returned to the guest) until its fence signals. With `--wayland-socket`, capset 5's
contexts (CTX_CREATE with that capset, then every command on their ids) and the mapping
of host blobs go to `crossdomain` and `blob`, beside any renderer (`routing` says which
side a command is for); a cross-domain POLL is held (`_control` gives no length) until
its context answers it, and only the renderer's commands go through its fences.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from vhost_user_core import (
    STANDARD_FEATURES,
    VIRTIO_F_RING_RESET,
    BackendError,
    DescriptorChain,
    GuestMemory,
    ProtocolFeature,
    SharedMemory,
    VhostUserBackend,
    Vring,
    Worker,
)

from .args import GpuConfig
from .blob import HOST_VISIBLE_SIZE, Blobs
from .crossdomain import CAPSET_CROSS_DOMAIN, CrossDomain
from .display import Display, DisplayError, HeadlessDisplay, QemuDisplay
from .protocol import (
    BLOB_MEM_GUEST,
    CONFIG,
    HDR_SIZE,
    MAX_BACKING_ENTRIES,
    MAX_SCANOUTS,
    VIRTIO_GPU_F_CONTEXT_INIT,
    VIRTIO_GPU_F_EDID,
    VIRTIO_GPU_F_RESOURCE_BLOB,
    VIRTIO_GPU_F_RESOURCE_UUID,
    VIRTIO_GPU_F_VIRGL,
    AttachBacking,
    Cmd,
    CtrlHeader,
    CtxCreate,
    GetCapset,
    GetCapsetInfo,
    GetEdid,
    Rect,
    ResourceCreate2D,
    ResourceCreateBlob,
    ResourceFlush,
    ResourceId,
    ResourceMapBlob,
    Resp,
    SetScanout,
    SetScanoutBlob,
    ShortCommand,
    Submit3D,
    TransferToHost2D,
    UpdateCursor,
    encode_capset_info,
    encode_display_info,
    encode_edid,
    encode_map_info,
    encode_uuid,
)
from .renderer import Capset, CommandError, NullRenderer, Renderer, Renderer2D, ScanoutSource
from .routing import CONTEXT_COMMANDS, Router, Side

log = logging.getLogger(__name__)

CONTROLQ, CURSORQ = 0, 1
#: Scanouts without a display socket. QEMU's vhost-user-gpu puts its own count in the
#: config space the guest reads and checks scanout ids itself, so with its socket any
#: id the protocol can carry is taken.
NUM_SCANOUTS = 1
#: The most readable bytes a command needs: a blob with the most backing entries.
MAX_COMMAND = HDR_SIZE + 32 + 16 * MAX_BACKING_ENTRIES
#: The largest SUBMIT_3D read: Mesa's virgl batches are at most 256 KiB; a bigger one
#: is cut here and refused as short.
MAX_SUBMIT = 8 << 20
CURSOR_COMMAND = HDR_SIZE + 32
CROSS_DOMAIN_FEATURES = VIRTIO_GPU_F_RESOURCE_BLOB | VIRTIO_GPU_F_VIRGL | VIRTIO_GPU_F_CONTEXT_INIT
#: Answers a held command later (a cross-domain POLL): its response bytes.
Later = Callable[[bytes], None]


def make_renderer(config: GpuConfig) -> Renderer:
    if config.mode == "virglrenderer":
        from .renderer.virgl import VirglRenderer  # links libvirglrenderer: only when used

        return VirglRenderer(config.virgl)
    return NullRenderer() if config.mode == "null" else Renderer2D()


@dataclass
class Scanout:
    source: ScanoutSource
    rect: Rect  # the part of the source shown, in the source's coordinates
    dmabuf: bool = False  # handed to QEMU as a dma-buf: updates are DMABUF_UPDATEs


class GpuBackend(VhostUserBackend):
    name = "vhost-device-gpu"
    num_queues = 2
    max_queue_size = 1024
    protocol_features = ProtocolFeature.MQ

    def __init__(
        self, config: GpuConfig, renderer_factory: Callable[[GpuConfig], Renderer] = make_renderer
    ) -> None:
        self.config = config
        self.renderer = renderer_factory(config)
        #: Host blobs and guest blobs' entries (the cross-domain context's memory).
        self.blobs = Blobs()
        #: The cross-domain context type, with a compositor socket to reach.
        self.crossdomain = (
            CrossDomain(config.wayland_socket, self.blobs) if config.wayland_socket else None
        )
        self.router = Router(self.renderer, self.crossdomain, self.blobs)
        self.features = (
            STANDARD_FEATURES
            | VIRTIO_F_RING_RESET  # upstream's; QEMU's vhost-user-gpu acks it regardless
            | VIRTIO_GPU_F_RESOURCE_UUID
            | (0 if config.headless else VIRTIO_GPU_F_EDID)
            | self.renderer.features
            # Linux takes CONTEXT_INIT and HOST3D blobs only from a device with VIRGL.
            | (CROSS_DOMAIN_FEATURES if self.crossdomain else 0)
        )
        self._controlq: Vring | None = None
        self.acked = 0
        self.display: Display = HeadlessDisplay()
        self.num_scanouts = NUM_SCANOUTS
        self.scanouts: dict[int, Scanout] = {}
        self.events_read = 0
        self._handlers: dict[int, Callable[[CtrlHeader, bytes], bytes | None]] = {
            Cmd.GET_DISPLAY_INFO: self._get_display_info,
            Cmd.GET_EDID: self._get_edid,
            Cmd.RESOURCE_CREATE_2D: self._create_2d,
            Cmd.RESOURCE_UNREF: self._unref,
            Cmd.SET_SCANOUT: self._set_scanout,
            Cmd.RESOURCE_FLUSH: self._flush,
            Cmd.TRANSFER_TO_HOST_2D: self._transfer_to_host_2d,
            Cmd.RESOURCE_ATTACH_BACKING: self._attach_backing,
            Cmd.RESOURCE_DETACH_BACKING: self._detach_backing,
            Cmd.GET_CAPSET_INFO: self._get_capset_info,
            Cmd.GET_CAPSET: self._get_capset,
            Cmd.RESOURCE_ASSIGN_UUID: self._assign_uuid,
            Cmd.RESOURCE_CREATE_BLOB: self._create_blob,
            Cmd.SET_SCANOUT_BLOB: self._set_scanout_blob,
        }

    # -- vhost-user hooks ------------------------------------------------------------

    def config_space(self) -> bytes:
        return CONFIG.pack(self.events_read, 0, self.num_scanouts, len(self._capsets()))

    def _capsets(self) -> list[Capset]:
        """The renderer's capsets, then cross-domain's (5) when it is configured."""
        capsets = self.renderer.capsets()
        return capsets + [self.crossdomain.capset] if self.crossdomain else capsets

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self._controlq = vrings[CONTROLQ]
        self.renderer.attach(vrings[CONTROLQ].worker)
        if self.crossdomain is not None:
            self.crossdomain.worker = vrings[CONTROLQ].worker

    def shmem_regions(self) -> tuple[int, ...]:
        """shmid 1, host-visible: where mapped host blobs appear (cross-domain only)."""
        return (0, HOST_VISIBLE_SIZE) if self.crossdomain else ()

    def attach_shmem(self, shmem: SharedMemory) -> None:
        self.blobs.shmem = shmem

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index == CONTROLQ and self.crossdomain is not None:
            self.crossdomain.release_fences()

    def set_config(self, offset: int, data: bytes) -> None:
        """Only events_clear is writable; QEMU writes the whole space, so the rest of a
        write is ignored rather than refused."""
        space = bytearray(self.config_space())
        if offset + len(data) > len(space):
            raise BackendError(f"config write [{offset}, {offset + len(data)}) beyond 16 bytes")
        space[offset : offset + len(data)] = data
        if offset < 8 and offset + len(data) > 4:
            (clear,) = struct.unpack_from("<I", space, 4)
            self.events_read &= ~clear

    def acked_features(self, features: int) -> None:
        self.acked = features

    def memory_changed(self, memory: GuestMemory) -> None:
        self.renderer.memory_changed(memory)
        self.blobs.memory_changed(memory)

    def gpu_socket(self, sock: socket.socket) -> None:
        if self.config.headless:
            log.info("--headless: the display socket is not used")
            sock.close()
            return
        self.display.close()
        self.display = QemuDisplay(sock)
        self.num_scanouts = MAX_SCANOUTS

    def reset(self) -> None:
        if self.crossdomain is not None:
            self.crossdomain.reset()
        self.blobs.reset()
        self.renderer.reset()
        self.scanouts.clear()
        self.events_read = 0
        self.acked = 0

    def close(self) -> None:
        if self.crossdomain is not None:
            self.crossdomain.reset()
        self.blobs.reset()
        self.renderer.close()
        self.display.close()

    def handle_queue(self, vring: Vring) -> None:
        if vring.index != CONTROLQ:
            for batch in vring.batches():
                vring.complete(batch, [self._cursor(chain) for chain in batch])
            return
        for batch in vring.batches():
            answers = [self._control(chain) for chain in batch]
            # Held answers go back later: a cross-domain POLL once its context answers it
            # (no length yet), a fenced answer the renderer holds once its fence signals;
            # the rest now (the used ring may be out of order: each entry names its head).
            held = [
                length is None
                or (
                    fence is not None
                    and self.renderer.defer_fence(
                        fence, functools.partial(vring.complete_one, chain.head, length)
                    )
                )
                for chain, (length, fence) in zip(batch, answers, strict=True)
            ]
            if not any(held):
                vring.complete(batch, [cast(int, length) for length, _ in answers])
                continue
            for chain, (length, _), hold in zip(batch, answers, held, strict=True):
                if not hold:
                    vring.complete_one(chain.head, cast(int, length))

    def _later(self, chain: DescriptorChain) -> Later:
        """How a held command is answered: write, then return the chain."""

        def answer(data: bytes) -> None:
            vring = self._controlq
            if vring is None or not vring.active:
                return  # the ring stopped or reset meanwhile: nothing to return it to
            vring.complete_one(chain.head, chain.write(data))

        return answer

    # -- the control queue -----------------------------------------------------------

    def _control(self, chain: DescriptorChain) -> tuple[int | None, CtrlHeader | None]:
        """Serve one command: the bytes written (None: the answer is held by its
        cross-domain context), and its header if the renderer served it with a fence
        (for the renderer to hold)."""
        data = chain.read(MAX_COMMAND)
        try:
            header = CtrlHeader.decode(data)
        except ShortCommand:
            log.warning("a control request of %d bytes has no header", len(data))
            return chain.write(CtrlHeader(Resp.ERR_UNSPEC).encode()), None
        if header.type == Cmd.SUBMIT_3D and len(data) == MAX_COMMAND:
            data = chain.read(MAX_SUBMIT)
        fence: CtrlHeader | None = None
        try:
            if self.router.route(header, data) is Side.CROSS_DOMAIN:
                answer = self._cross_domain(header, data, self._later(chain))
                if answer is None:
                    return None, None
            else:
                answer = self._dispatch(header, data)
                if header.fenced:
                    fence = header
        except ShortCommand as exc:
            log.warning("command %#x is short: %s", header.type, exc)
            answer = header.response(Resp.ERR_UNSPEC).encode()
        except CommandError as exc:
            log.warning("command %#x refused (%s): %s", header.type, exc.status.name, exc)
            answer = header.response(exc.status).encode()
        return chain.write(answer), fence

    def _dispatch(self, header: CtrlHeader, data: bytes) -> bytes:
        handler = self._handlers.get(header.type)
        if handler is not None:
            answer = handler(header, data)
            return answer if answer is not None else header.response(Resp.OK_NODATA).encode()
        if header.type in CONTEXT_COMMANDS:
            return self.renderer.handle_3d(header, data)
        raise CommandError(Resp.ERR_UNSPEC, f"unknown command {header.type:#x}")

    # -- the cross-domain context and host blobs (capset 5) ----------------------------

    def _cross_domain(self, header: CtrlHeader, data: bytes, later: Later) -> bytes | None:
        assert self.crossdomain is not None
        ok = header.response(Resp.OK_NODATA).encode()
        kind = header.type
        if kind == Cmd.CTX_CREATE:
            self._negotiated(VIRTIO_GPU_F_CONTEXT_INIT, "CTX_CREATE with a capset")
            name = CtxCreate.decode(data).debug_name.decode("utf-8", "replace")
            self.crossdomain.create(header.ctx_id, name)
        elif kind == Cmd.CTX_DESTROY:
            self.crossdomain.destroy(header.ctx_id)
        elif kind == Cmd.CTX_ATTACH_RESOURCE:
            rid = ResourceId.decode(data).resource_id
            if rid not in self.blobs.host and rid not in self.blobs.guest:
                raise CommandError(
                    Resp.ERR_INVALID_RESOURCE_ID,
                    f"no blob {rid}: a cross-domain context takes only blobs",
                )
            self.crossdomain.context(header.ctx_id).attach(rid)
        elif kind == Cmd.CTX_DETACH_RESOURCE:
            self.crossdomain.context(header.ctx_id).detach(ResourceId.decode(data).resource_id)
        elif kind == Cmd.SUBMIT_3D:
            ctx = self.crossdomain.context(header.ctx_id)
            commands = Submit3D.decode(data).commands
            if not ctx.submit(
                header, commands, lambda status: later(header.response(status).encode())
            ):
                return None
        elif kind == Cmd.RESOURCE_MAP_BLOB:
            cmd = ResourceMapBlob.decode(data)
            map_info = self.blobs.map(cmd.resource_id, cmd.offset)
            return encode_map_info(header.response(Resp.OK_MAP_INFO), map_info)
        elif kind == Cmd.RESOURCE_UNMAP_BLOB:
            self.blobs.unmap(ResourceId.decode(data).resource_id)
        else:
            raise CommandError(Resp.ERR_UNSPEC, f"command {kind:#x} on a cross-domain context")
        return ok

    def _pixels_of(self, resource_id: int) -> Renderer | Blobs:
        """Who holds a resource's pixels: the blob store for a host blob, else the renderer."""
        return self.blobs if resource_id in self.blobs.host else self.renderer

    def _negotiated(self, feature: int, what: str) -> None:
        if not self.acked & feature:
            raise CommandError(Resp.ERR_UNSPEC, f"{what} without its feature negotiated")

    def _check_scanout_id(self, scanout_id: int) -> None:
        if scanout_id >= self.num_scanouts:
            raise CommandError(Resp.ERR_INVALID_SCANOUT_ID, f"no scanout {scanout_id}")

    def _get_display_info(self, header: CtrlHeader, _data: bytes) -> bytes:
        try:
            modes = self.display.display_info()
        except DisplayError as exc:
            raise CommandError(Resp.ERR_UNSPEC, f"display info: {exc}") from exc
        return encode_display_info(header.response(Resp.OK_DISPLAY_INFO), modes)

    def _get_edid(self, header: CtrlHeader, data: bytes) -> bytes:
        self._negotiated(VIRTIO_GPU_F_EDID, "GET_EDID")
        cmd = GetEdid.decode(data)
        if cmd.scanout_id >= self.num_scanouts:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no scanout {cmd.scanout_id}")
        try:
            edid = self.display.edid(cmd.scanout_id)
        except DisplayError as exc:
            raise CommandError(Resp.ERR_UNSPEC, f"EDID: {exc}") from exc
        if edid is None:
            raise CommandError(Resp.ERR_UNSPEC, "the display has no EDID")
        return encode_edid(header.response(Resp.OK_EDID), edid)

    def _create_2d(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = ResourceCreate2D.decode(data)
        self.router.new_resource(cmd.resource_id, Side.RENDERER)
        self.renderer.create_2d(cmd.resource_id, cmd.format, cmd.width, cmd.height)

    def _unref(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = ResourceId.decode(data)
        if not self.blobs.forget(cmd.resource_id):
            self.renderer.unref(cmd.resource_id)
        if self.crossdomain is not None:
            self.crossdomain.forget(cmd.resource_id)
        for scanout_id in [
            i for i, s in self.scanouts.items() if s.source.resource_id == cmd.resource_id
        ]:
            self._disable(scanout_id)

    def _disable(self, scanout_id: int) -> None:
        if self.scanouts.pop(scanout_id, None) is not None:
            self.display.scanout(scanout_id, 0, 0)

    def _show(self, scanout_id: int, source: ScanoutSource, rect: Rect) -> None:
        """The scanout shows `rect` of `source` from now on: a surface of its size,
        then all of its pixels (QEMU shows a new surface at its first update)."""
        pixels = self._pixels_of(source.resource_id)
        pixels.check_scanout(source, rect)
        exportable = pixels is self.renderer and self.display.takes_dmabufs
        dmabuf = self.renderer.export_scanout(source) if exportable else None
        if dmabuf is not None:
            try:
                self.display.dmabuf_scanout(
                    scanout_id, rect, (dmabuf.width, dmabuf.height), dmabuf.stride,
                    dmabuf.flags, dmabuf.fourcc, dmabuf.fd, dmabuf.modifier,
                )  # fmt: skip
            finally:
                os.close(dmabuf.fd)
            self.scanouts[scanout_id] = Scanout(source, rect, dmabuf=True)
            self.display.dmabuf_update(scanout_id, rect)
            return
        self.scanouts[scanout_id] = Scanout(source, rect)
        self.display.scanout(scanout_id, rect.width, rect.height)
        self._update(scanout_id, rect)

    def _update(self, scanout_id: int, damage: Rect) -> None:
        """Send the part `damage` (source coordinates) of what the scanout shows."""
        s = self.scanouts[scanout_id]
        part = damage.intersect(s.rect)
        if part is None or not self.display.wants_pixels:
            return
        where = Rect(part.x - s.rect.x, part.y - s.rect.y, part.width, part.height)
        if s.dmabuf:
            self.display.dmabuf_update(scanout_id, where)
            return
        pixels = self._pixels_of(s.source.resource_id)
        self.display.update(scanout_id, where, lambda dst: pixels.read_pixels(s.source, part, dst))

    def _set_scanout(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = SetScanout.decode(data)
        self._check_scanout_id(cmd.scanout_id)
        if cmd.resource_id == 0:
            self._disable(cmd.scanout_id)
            return
        source = ScanoutSource(cmd.resource_id, cmd.rect.width, cmd.rect.height)
        self._show(cmd.scanout_id, source, cmd.rect)

    def _set_scanout_blob(self, _header: CtrlHeader, data: bytes) -> None:
        self._negotiated(VIRTIO_GPU_F_RESOURCE_BLOB, "SET_SCANOUT_BLOB")
        cmd = SetScanoutBlob.decode(data)
        self._check_scanout_id(cmd.scanout_id)
        if cmd.resource_id == 0:
            self._disable(cmd.scanout_id)
            return
        source = ScanoutSource(
            cmd.resource_id, cmd.width, cmd.height, cmd.format, cmd.strides[0], cmd.offsets[0]
        )
        self._show(cmd.scanout_id, source, cmd.rect)

    def _flush(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = ResourceFlush.decode(data)
        self._pixels_of(cmd.resource_id).check_flush(cmd.resource_id, cmd.rect)
        for scanout_id, s in list(self.scanouts.items()):
            if s.source.resource_id == cmd.resource_id:
                self._update(scanout_id, cmd.rect)

    def _transfer_to_host_2d(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = TransferToHost2D.decode(data)
        self.renderer.transfer_to_host_2d(cmd.resource_id, cmd.rect, cmd.offset)

    def _attach_backing(self, _header: CtrlHeader, data: bytes) -> None:
        cmd = AttachBacking.decode(data)
        self.renderer.attach_backing(cmd.resource_id, cmd.entries)

    def _detach_backing(self, _header: CtrlHeader, data: bytes) -> None:
        self.renderer.detach_backing(ResourceId.decode(data).resource_id)

    def _get_capset_info(self, header: CtrlHeader, data: bytes) -> bytes:
        cmd = GetCapsetInfo.decode(data)
        capsets = self._capsets()
        if cmd.index >= len(capsets):
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"no capset at index {cmd.index}")
        c = capsets[cmd.index]
        return encode_capset_info(
            header.response(Resp.OK_CAPSET_INFO), c.capset_id, c.max_version, c.max_size
        )

    def _get_capset(self, header: CtrlHeader, data: bytes) -> bytes:
        cmd = GetCapset.decode(data)
        if self.crossdomain is not None and cmd.capset_id == CAPSET_CROSS_DOMAIN:
            blob = self.crossdomain.get_capset(cmd.version)
        else:
            blob = self.renderer.get_capset(cmd.capset_id, cmd.version)
        return header.response(Resp.OK_CAPSET).encode() + blob

    def _assign_uuid(self, header: CtrlHeader, data: bytes) -> bytes:
        self._negotiated(VIRTIO_GPU_F_RESOURCE_UUID, "RESOURCE_ASSIGN_UUID")
        uuid = self.renderer.assign_uuid(ResourceId.decode(data).resource_id)
        return encode_uuid(header.response(Resp.OK_RESOURCE_UUID), uuid)

    def _create_blob(self, header: CtrlHeader, data: bytes) -> None:
        self._negotiated(VIRTIO_GPU_F_RESOURCE_BLOB, "RESOURCE_CREATE_BLOB")
        cmd = ResourceCreateBlob.decode(data)
        side = self.router.blob_side(header.ctx_id, cmd.blob_mem)
        self.router.new_resource(cmd.resource_id, side)
        if side is Side.CROSS_DOMAIN:
            assert self.crossdomain is not None
            self.crossdomain.context(header.ctx_id).create_blob(
                cmd.resource_id, cmd.blob_mem, cmd.blob_flags, cmd.blob_id, cmd.size
            )
            return
        self.renderer.create_blob(
            cmd.resource_id, cmd.blob_mem, cmd.blob_flags, cmd.size, cmd.entries
        )
        if cmd.blob_mem == BLOB_MEM_GUEST:  # a context may use it as a ring
            self.blobs.record_guest(cmd.resource_id, cmd.entries, cmd.size)

    # -- the cursor queue ------------------------------------------------------------

    def _cursor(self, chain: DescriptorChain) -> int:
        """UPDATE_CURSOR / MOVE_CURSOR. Linux gives these no response buffer; one that
        has room gets OK_NODATA or the error."""
        data = chain.read(CURSOR_COMMAND)
        try:
            header = CtrlHeader.decode(data)
            cmd = UpdateCursor.decode(data)
            self._check_scanout_id(cmd.scanout_id)
            if header.type not in (Cmd.MOVE_CURSOR, Cmd.UPDATE_CURSOR):
                raise CommandError(Resp.ERR_UNSPEC, f"command {header.type:#x} on the cursor queue")
            if cmd.resource_id == 0:  # no cursor resource: hidden (QEMU's rule, both commands)
                self.display.cursor_hide(cmd.scanout_id, cmd.x, cmd.y)
            elif header.type == Cmd.MOVE_CURSOR:
                log.debug("scanout %d: cursor at (%d, %d)", cmd.scanout_id, cmd.x, cmd.y)
                self.display.cursor_move(cmd.scanout_id, cmd.x, cmd.y)
            else:
                image = self.renderer.cursor_image(cmd.resource_id)
                log.debug(
                    "scanout %d: cursor image of resource %d, hot (%d, %d), at (%d, %d)",
                    cmd.scanout_id, cmd.resource_id, cmd.hot_x, cmd.hot_y, cmd.x, cmd.y,
                )  # fmt: skip
                self.display.cursor_update(
                    cmd.scanout_id, cmd.x, cmd.y, cmd.hot_x, cmd.hot_y, image
                )
        except ShortCommand as exc:
            log.warning("cursor command is short: %s", exc)
            return chain.write(CtrlHeader(Resp.ERR_UNSPEC).encode()) if chain.writable_len else 0
        except CommandError as exc:
            log.warning("cursor command refused (%s): %s", exc.status.name, exc)
            return chain.write(header.response(exc.status).encode()) if chain.writable_len else 0
        return chain.write(header.response(Resp.OK_NODATA).encode()) if chain.writable_len else 0
