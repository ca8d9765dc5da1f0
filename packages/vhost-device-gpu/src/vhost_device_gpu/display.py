"""Where scanouts go: QEMU's vhost-user-gpu display protocol, or nowhere (headless).

QEMU's `vhost-user-gpu` device hands the backend one end of a socketpair with
VHOST_USER_GPU_SET_SOCKET at DRIVER_OK (QEMU's docs/interop/vhost-user-gpu.rst): the
backend asks it for display info and EDID, and sends it scanout sizes, pixel updates
(x8r8g8b8, stride width x 4) and the cursor. Apart from the virtio command handling, and
with no knowledge of resources: the device says which pixels, this module moves them.

Two rules keep QEMU and the daemon from waiting on each other. Nothing is read from the
socket on the thread that got it (QEMU is then still inside its start sequence, holding
its big lock, and cannot answer): the protocol handshake happens on first use, from the
worker. And no-reply messages are written by a writer thread, not by the worker: a big
UPDATE that blocks on the socket while QEMU's vCPU waits, lock held, for a GET_CONFIG
reply that needs the worker's session lock would otherwise hang both.
"""

from __future__ import annotations

import collections
import enum
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Protocol

from vhost_user_core import send_with_fds

from .protocol import (
    CURSOR_SIZE,
    DISPLAY_INFO_SIZE,
    EDID_RESP_SIZE,
    DisplayMode,
    Rect,
    ShortCommand,
    decode_display_info,
    decode_edid,
)

log = logging.getLogger(__name__)


class GpuRequest(enum.IntEnum):
    GET_PROTOCOL_FEATURES = 1
    SET_PROTOCOL_FEATURES = 2
    GET_DISPLAY_INFO = 3
    CURSOR_POS = 4
    CURSOR_POS_HIDE = 5
    CURSOR_UPDATE = 6
    SCANOUT = 7
    UPDATE = 8
    DMABUF_SCANOUT = 9
    DMABUF_UPDATE = 10
    GET_EDID = 11
    DMABUF_SCANOUT2 = 12


FLAG_REPLY = 0x4
PROTOCOL_F_EDID = 1 << 0
PROTOCOL_F_DMABUF2 = 1 << 1
#: What we speak: EDID; DMABUF2 is the 3D stage's.
OUR_PROTOCOL_FEATURES = PROTOCOL_F_EDID

HEADER = struct.Struct("<III")
UPDATE_HEAD = struct.Struct("<IIIII")
CURSOR_POS = struct.Struct("<III")
CURSOR_UPDATE_HEAD = struct.Struct("<IIIII")
CURSOR_BYTES = CURSOR_SIZE * CURSOR_SIZE * 4
#: The largest reply we accept (display info or EDID); anything longer is a broken peer.
MAX_REPLY = 4096
#: How long the worker waits for QEMU's answer before failing the guest's command.
REPLY_TIMEOUT = 5.0
#: Bytes of updates the writer may hold before the worker waits for it...
MAX_BACKLOG = 32 << 20
#: ... and for how long, before it drops an update rather than hang the guest.
BACKLOG_TIMEOUT = 2.0

#: Sent update buffers kept for reuse.
SPARE_BUFFERS = 4

#: What a headless daemon (or one not given a display socket) announces: QEMU's default.
DEFAULT_MODE = DisplayMode(Rect(0, 0, 1280, 800), True)

#: Fills the pixels of an update: the message's payload view, rows width x 4 bytes apart.
Fill = Callable[[memoryview], None]


class DisplayError(Exception):
    """The display peer is gone or answered nonsense (internal; the device logs it)."""


class Display(Protocol):
    """A scanout sink. Called from the worker thread that owns the control queue."""

    def display_info(self) -> list[DisplayMode]:
        """The scanouts' preferred modes, as GET_DISPLAY_INFO answers them."""

    def edid(self, scanout: int) -> bytes | None:
        """The scanout's EDID blob, or None when the display has none."""

    def scanout(self, scanout: int, width: int, height: int) -> None:
        """The scanout shows a width x height surface now (0 x 0: none)."""

    def update(self, scanout: int, rect: Rect, fill: Fill) -> None:
        """Pixels of `rect` (scanout coordinates) changed; `fill` writes them as
        x8r8g8b8 into the view it is given (every byte: it may hold an older frame),
        if the display wants them."""

    def cursor_update(
        self, scanout: int, x: int, y: int, hot_x: int, hot_y: int, image: bytes
    ) -> None:
        """A new 64x64 A8R8G8B8 cursor image, shown at (x, y)."""

    def cursor_move(self, scanout: int, x: int, y: int) -> None: ...

    def cursor_hide(self, scanout: int, x: int, y: int) -> None: ...

    @property
    def wants_pixels(self) -> bool:
        """False when updates go nowhere, so nothing is copied for them."""

    @property
    def takes_dmabufs(self) -> bool:
        """True when scanouts may be handed over as dma-bufs (QEMU's socket)."""

    def dmabuf_scanout(
        self, scanout: int, rect: Rect, fd_size: tuple[int, int], stride: int, flags: int,
        fourcc: int, fd: int, modifier: int | None = None,
    ) -> None:  # fmt: skip
        """The scanout shows `rect` of the dma-buf `fd` (duplicated; the caller keeps its
        own) from now on."""

    def dmabuf_update(self, scanout: int, rect: Rect) -> None:
        """`rect` of the scanout's dma-buf changed; returns once the display has it."""

    def close(self) -> None: ...


class HeadlessDisplay:
    """No display: one 1280x800 scanout announced, no EDID, every update dropped."""

    wants_pixels = False
    takes_dmabufs = False

    def __init__(self, modes: list[DisplayMode] | None = None) -> None:
        self.modes = modes or [DEFAULT_MODE]

    def display_info(self) -> list[DisplayMode]:
        return list(self.modes)

    def edid(self, scanout: int) -> bytes | None:
        return None

    def scanout(self, scanout: int, width: int, height: int) -> None:
        pass

    def update(self, scanout: int, rect: Rect, fill: Fill) -> None:
        pass

    def cursor_update(
        self, scanout: int, x: int, y: int, hot_x: int, hot_y: int, image: bytes
    ) -> None:
        pass

    def cursor_move(self, scanout: int, x: int, y: int) -> None:
        pass

    def cursor_hide(self, scanout: int, x: int, y: int) -> None:
        pass

    def dmabuf_scanout(
        self, scanout: int, rect: Rect, fd_size: tuple[int, int], stride: int, flags: int,
        fourcc: int, fd: int, modifier: int | None = None,
    ) -> None:  # fmt: skip
        pass

    def dmabuf_update(self, scanout: int, rect: Rect) -> None:
        pass

    def close(self) -> None:
        pass


def message(request: int, payload: bytes | bytearray = b"", flags: int = 0) -> bytes:
    return HEADER.pack(request, flags, len(payload)) + bytes(payload)


class _Writer:
    """The thread that writes no-reply messages, in order, with a bounded backlog."""

    def __init__(self, sock: socket.socket, on_error: Callable[[OSError], None]) -> None:
        self.sock = sock
        self.on_error = on_error
        #: Sent update buffers, reused for the next update of the same size: a fresh
        #: multi-MiB bytearray costs a page fault per page, more than the copy itself.
        self.spare: list[bytearray] = []
        self.cond = threading.Condition()
        self.queue: collections.deque[tuple[bytes | bytearray, list[int]]] = collections.deque()
        self.backlog = 0
        self.stopping = False
        self.broken = False
        self.thread = threading.Thread(target=self._run, name="gpu-display-writer", daemon=True)
        self.thread.start()

    def put(self, data: bytes | bytearray, fds: list[int] | None = None) -> bool:
        """Queue `data`; False if the peer is gone or the backlog did not drain."""
        with self.cond:
            if self.broken or self.stopping:
                return False
            if self.backlog > MAX_BACKLOG and not self.cond.wait_for(
                lambda: self.backlog <= MAX_BACKLOG or self.broken, BACKLOG_TIMEOUT
            ):
                log.warning("display peer is not reading: an update of %d bytes dropped", len(data))
                return False
            self.queue.append((data, fds or []))
            self.backlog += len(data)
            self.cond.notify_all()
            return True

    def buffer(self, size: int) -> bytearray:
        """A bytearray of `size` for a message, a sent one if one fits (not zeroed)."""
        with self.cond:
            for i, spare in enumerate(self.spare):
                if len(spare) == size:
                    return self.spare.pop(i)
            if len(self.spare) >= SPARE_BUFFERS:
                self.spare.pop(0)
        return bytearray(size)

    def flush(self, timeout: float = REPLY_TIMEOUT) -> bool:
        """Wait until everything queued has been written."""
        with self.cond:
            return self.cond.wait_for(lambda: not self.queue or self.broken, timeout)

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.queue or self.stopping)
                if not self.queue:
                    return
                data, fds = self.queue[0]
            try:
                send_with_fds(self.sock, data, fds)
            except OSError as exc:
                _close_all(fds)
                with self.cond:
                    self.broken = True
                    self.queue.clear()
                    self.backlog = 0
                    self.cond.notify_all()
                self.on_error(exc)
                return
            _close_all(fds)
            with self.cond:
                self.queue.popleft()
                self.backlog -= len(data)
                if isinstance(data, bytearray) and len(self.spare) < SPARE_BUFFERS:
                    self.spare.append(data)
                self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout=REPLY_TIMEOUT)
        with self.cond:
            for _, fds in self.queue:
                _close_all(fds)
            self.queue.clear()


def _close_all(fds: list[int]) -> None:
    import os

    for fd in fds:
        os.close(fd)


class QemuDisplay:
    """The backend end of QEMU's vhost-user-gpu display socket."""

    wants_pixels = True
    takes_dmabufs = True

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(True)
        self.features: int | None = None  # negotiated on first use
        self.gone = False
        self._writer = _Writer(sock, self._lost)
        self._surfaces: dict[int, tuple[int, int]] = {}

    def _lost(self, exc: OSError) -> None:
        if not self.gone:
            log.info("display socket closed: %s", exc)
        self.gone = True

    # -- requests with a reply (worker thread only) --------------------------------------

    def _recv_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise DisplayError("display socket closed")
            data += chunk
        return bytes(data)

    def _ask(self, request: GpuRequest, payload: bytes = b"") -> bytes:
        if self.gone:
            raise DisplayError("display socket closed")
        if not self._writer.put(message(request, payload)) or not self._writer.flush():
            raise DisplayError(f"{request.name} could not be sent")
        self.sock.settimeout(REPLY_TIMEOUT)
        try:
            while True:
                req, flags, size = HEADER.unpack(self._recv_exact(HEADER.size))
                if size > MAX_REPLY:
                    raise DisplayError(f"display peer sent a {size}-byte message")
                body = self._recv_exact(size)
                if req == request and flags & FLAG_REPLY:
                    return body
                log.debug("display peer message %d (flags %#x) skipped", req, flags)
        except TimeoutError as exc:
            self._give_up(f"no answer to {request.name} in {REPLY_TIMEOUT} s")
            raise DisplayError(f"no answer to {request.name} in {REPLY_TIMEOUT} s") from exc
        except DisplayError as exc:
            self._give_up(str(exc))
            raise
        except OSError as exc:
            self._lost(exc)
            raise DisplayError(f"display socket: {exc}") from exc
        finally:
            if not self.gone:
                self.sock.settimeout(None)

    def _give_up(self, why: str) -> None:
        """A peer that breaks the protocol, or stops answering mid-stream, leaves the
        byte stream at an unknown place: nothing more is read from or sent to it."""
        log.warning("display socket abandoned: %s", why)
        self.gone = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handshake(self) -> None:
        if self.features is not None:
            return
        reply = self._ask(GpuRequest.GET_PROTOCOL_FEATURES)
        if len(reply) < 8:
            raise DisplayError(f"protocol features reply of {len(reply)} bytes")
        (offered,) = struct.unpack_from("<Q", reply)
        self.features = offered & OUR_PROTOCOL_FEATURES
        self._writer.put(
            message(GpuRequest.SET_PROTOCOL_FEATURES, struct.pack("<Q", self.features))
        )
        log.debug("display protocol features %#x (peer offered %#x)", self.features, offered)

    def display_info(self) -> list[DisplayMode]:
        self._handshake()
        reply = self._ask(GpuRequest.GET_DISPLAY_INFO)
        if len(reply) < DISPLAY_INFO_SIZE:
            raise DisplayError(f"display info reply of {len(reply)} bytes")
        return decode_display_info(reply)

    def edid(self, scanout: int) -> bytes | None:
        self._handshake()
        if not (self.features or 0) & PROTOCOL_F_EDID:
            return None
        reply = self._ask(GpuRequest.GET_EDID, struct.pack("<I", scanout))
        if len(reply) < EDID_RESP_SIZE:
            raise DisplayError(f"EDID reply of {len(reply)} bytes")
        try:
            return decode_edid(reply)
        except ShortCommand as exc:
            raise DisplayError(str(exc)) from exc

    # -- no-reply messages -----------------------------------------------------------

    def _send(self, request: GpuRequest, payload: bytes | bytearray) -> None:
        if not self.gone:
            self._writer.put(message(request, payload))

    def scanout(self, scanout: int, width: int, height: int) -> None:
        if self._surfaces.get(scanout) == (width, height):
            return  # QEMU allocates a surface per SCANOUT: only when the size changes
        self._surfaces[scanout] = (width, height)
        self._send(GpuRequest.SCANOUT, struct.pack("<III", scanout, width, height))

    def update(self, scanout: int, rect: Rect, fill: Fill) -> None:
        if self.gone or rect.empty or scanout not in self._surfaces:
            return
        head = HEADER.size + UPDATE_HEAD.size
        size = UPDATE_HEAD.size + rect.width * rect.height * 4
        msg = self._writer.buffer(HEADER.size + size)
        HEADER.pack_into(msg, 0, GpuRequest.UPDATE, 0, size)
        UPDATE_HEAD.pack_into(msg, HEADER.size, scanout, rect.x, rect.y, rect.width, rect.height)
        fill(memoryview(msg)[head:])
        self._writer.put(msg)

    def cursor_update(
        self, scanout: int, x: int, y: int, hot_x: int, hot_y: int, image: bytes
    ) -> None:
        if len(image) != CURSOR_BYTES:
            raise ValueError(f"a cursor image is {CURSOR_BYTES} bytes, not {len(image)}")
        self._send(
            GpuRequest.CURSOR_UPDATE, CURSOR_UPDATE_HEAD.pack(scanout, x, y, hot_x, hot_y) + image
        )

    def cursor_move(self, scanout: int, x: int, y: int) -> None:
        self._send(GpuRequest.CURSOR_POS, CURSOR_POS.pack(scanout, x, y))

    def cursor_hide(self, scanout: int, x: int, y: int) -> None:
        self._send(GpuRequest.CURSOR_POS_HIDE, CURSOR_POS.pack(scanout, x, y))

    def dmabuf_scanout(
        self,
        scanout: int,
        rect: Rect,
        fd_size: tuple[int, int],
        stride: int,
        flags: int,
        fourcc: int,
        fd: int,
        modifier: int | None = None,
    ) -> None:
        """DMABUF_SCANOUT (or SCANOUT2 with a modifier): for a renderer that exports
        dma-bufs (virgl with a render node); the 2D renderer has none. `fd` is
        duplicated; the caller keeps its own."""
        import os

        # the surface QEMU had for SCANOUT is replaced: a later SCANOUT of the same size
        # must be sent again
        self._surfaces.pop(scanout, None)

        body = struct.pack(
            "<IIIIIIIIIi", scanout, rect.x, rect.y, rect.width, rect.height, fd_size[0],
            fd_size[1], stride, flags, fourcc,
        )  # fmt: skip
        request = GpuRequest.DMABUF_SCANOUT
        if modifier is not None:
            request = GpuRequest.DMABUF_SCANOUT2
            body += struct.pack("<Q", modifier)
        if not self.gone:
            self._writer.put(message(request, body), [os.dup(fd)])

    def dmabuf_update(self, scanout: int, rect: Rect) -> None:
        """DMABUF_UPDATE: QEMU answers once its GL console has drawn the dma-buf (at
        once, drawing nothing, on a console without GL)."""
        if self.gone:
            return
        try:
            self._ask(
                GpuRequest.DMABUF_UPDATE,
                struct.pack("<IIIII", scanout, rect.x, rect.y, rect.width, rect.height),
            )
        except DisplayError as exc:
            log.warning("DMABUF_UPDATE of scanout %d: %s", scanout, exc)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a writer blocked on a full socket
        except OSError:
            pass
        self._writer.stop()
        self.sock.close()
