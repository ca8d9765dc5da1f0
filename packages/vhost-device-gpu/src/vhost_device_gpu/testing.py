"""QEMU's side of the vhost-user-gpu display socket, in Python, for tests and the
benchmark: answers the backend's questions (protocol features, display info, EDID) and
keeps what it is shown (surfaces composed from UPDATEs, the cursor), as QEMU's
hw/display/vhost-user-gpu.c does. Driving our daemon and QEMU's C backend alike. And the
benchmarks' start-up (`bench_daemon`): a daemon process connected to one."""

from __future__ import annotations

import shlex
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import daemon_process

from .display import (
    CURSOR_BYTES,
    FLAG_REPLY,
    HEADER,
    PROTOCOL_F_DMABUF2,
    PROTOCOL_F_EDID,
    GpuRequest,
    message,
)
from .protocol import CtrlHeader, DisplayMode, Rect, Resp, encode_display_info, encode_edid


@dataclass
class Surface:
    width: int
    height: int
    pixels: bytearray = field(default_factory=bytearray)
    updates: int = 0

    def pixel(self, x: int, y: int) -> int:
        """The x8r8g8b8 word at (x, y), X byte masked."""
        (word,) = struct.unpack_from("<I", self.pixels, (y * self.width + x) * 4)
        return int(word) & 0xFFFFFF


@dataclass
class Cursor:
    scanout: int
    x: int
    y: int
    hot: tuple[int, int] | None = None
    image: bytes | None = None
    visible: bool = True


class FakeQemuDisplay:
    """The VMM end of a display socketpair; `backend_end` goes to GPU_SET_SOCKET."""

    def __init__(
        self,
        modes: list[DisplayMode] | None = None,
        edid: bytes = b"",
        *,
        compose: bool = True,
        features: int = PROTOCOL_F_EDID | PROTOCOL_F_DMABUF2,
    ) -> None:
        self.sock, self.backend_end = socket.socketpair()
        self.modes = modes or [DisplayMode(Rect(0, 0, 1280, 800), True)]
        self.edid = edid
        self.compose = compose
        self.features = features
        self.set_features: int | None = None
        self.surfaces: dict[int, Surface] = {}
        self.cursor: Cursor | None = None
        self.log: list[tuple[int, bytes]] = []  # (request, payload head) of every message
        self.update_bytes = 0
        self.updates = 0
        #: DMABUF_SCANOUT fields by scanout (x, y, w, h, fd_w, fd_h, stride, flags,
        #: fourcc); the fds are in `fds`. And the DMABUF_UPDATE rectangles.
        self.dmabufs: dict[int, tuple[int, ...]] = {}
        self.dmabuf_updates: list[tuple[int, ...]] = []
        self.cond = threading.Condition()
        self.fds: list[int] = []
        self.thread = threading.Thread(target=self._run, name="fake-qemu-display", daemon=True)
        self.thread.start()

    def _recv_exact(self, size: int) -> bytes | None:
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if not n:
                return None
            got += n
        return bytes(data) if self.compose or size <= 4096 else data  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            try:
                msg, ancdata, _flags, _ = self.sock.recvmsg(HEADER.size, socket.CMSG_SPACE(16))
            except OSError:
                return
            if len(msg) < HEADER.size:
                more = self._recv_exact(HEADER.size - len(msg)) if msg else None
                if more is None:
                    return
                msg += more
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    self.fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
            request, _flags, size = HEADER.unpack(msg)
            body = self._recv_exact(size) if size else b""
            if body is None:
                return
            self._handle(request, body)

    def _reply(self, request: int, payload: bytes) -> None:
        self.sock.sendall(message(request, payload, FLAG_REPLY))

    def _handle(self, request: int, body: bytes) -> None:
        with self.cond:
            self.log.append((request, body[:64]))
            if request == GpuRequest.GET_PROTOCOL_FEATURES:
                self._reply(request, struct.pack("<Q", self.features))
            elif request == GpuRequest.SET_PROTOCOL_FEATURES:
                (self.set_features,) = struct.unpack_from("<Q", body)
            elif request == GpuRequest.GET_DISPLAY_INFO:
                info = encode_display_info(CtrlHeader(Resp.OK_DISPLAY_INFO), self.modes)
                self._reply(request, info)
            elif request == GpuRequest.GET_EDID:
                self._reply(request, encode_edid(CtrlHeader(Resp.OK_EDID), self.edid))
            elif request == GpuRequest.SCANOUT:
                scanout, width, height = struct.unpack_from("<III", body)
                if width == 0:
                    self.surfaces.pop(scanout, None)
                else:
                    pixels = bytearray(width * height * 4) if self.compose else bytearray()
                    self.surfaces[scanout] = Surface(width, height, pixels)
            elif request == GpuRequest.UPDATE:
                self._update(body)
            elif request in (GpuRequest.DMABUF_SCANOUT, GpuRequest.DMABUF_SCANOUT2):
                fields = struct.unpack_from("<IIIIIIIIIi", body)
                self.dmabufs[fields[0]] = fields[1:]
                self.surfaces.pop(fields[0], None)
            elif request == GpuRequest.DMABUF_UPDATE:
                self.dmabuf_updates.append(struct.unpack_from("<IIIII", body))
                self._reply(request, b"")  # QEMU: once its GL console has drawn it
            elif request in (GpuRequest.CURSOR_POS, GpuRequest.CURSOR_POS_HIDE):
                scanout, x, y = struct.unpack_from("<III", body)
                old = self.cursor
                self.cursor = Cursor(
                    scanout, x, y, old.hot if old else None, old.image if old else None,
                    request == GpuRequest.CURSOR_POS,
                )  # fmt: skip
            elif request == GpuRequest.CURSOR_UPDATE:
                scanout, x, y, hx, hy = struct.unpack_from("<IIIII", body)
                self.cursor = Cursor(scanout, x, y, (hx, hy), body[20 : 20 + CURSOR_BYTES])
            self.cond.notify_all()

    def _update(self, body: bytes) -> None:
        scanout, x, y, w, h = struct.unpack_from("<IIIII", body)
        self.updates += 1
        self.update_bytes += len(body) - 20
        surface = self.surfaces.get(scanout)
        if surface is None or not self.compose:
            return
        surface.updates += 1
        data = memoryview(body)[20:]
        for row in range(h):
            if y + row >= surface.height:
                break
            width = min(w, surface.width - x)
            start = ((y + row) * surface.width + x) * 4
            surface.pixels[start : start + width * 4] = data[row * w * 4 : (row * w + width) * 4]

    def wait(self, predicate: object, timeout: float = 5.0) -> bool:
        """Wait until `predicate()` holds (evaluated under the display's lock)."""
        with self.cond:
            return self.cond.wait_for(predicate, timeout)  # type: ignore[arg-type]

    def wait_update_bytes(self, total: int, timeout: float) -> None:
        """Until UPDATEs have carried `total` pixel bytes in all: a frame rate counts only
        frames the display has been shown."""
        if not self.wait(lambda: self.update_bytes >= total, timeout):
            raise RuntimeError("the display did not get every frame")

    def requests(self) -> list[int]:
        with self.cond:
            return [r for r, _ in self.log]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.sock.close()
        self.backend_end.close()
        import os

        for fd in self.fds:
            os.close(fd)


@dataclass
class BenchDaemon:
    """A daemon process as a VMM drives it: its control queue started, its display
    socket on a FakeQemuDisplay."""

    process: subprocess.Popen[bytes]
    display: FakeQemuDisplay
    frontend: Frontend
    control: FrontendQueue


@contextmanager
def bench_daemon(command: str, start_timeout: float) -> Iterator[BenchDaemon]:
    """Run `command` (`{sock}` filled in), connect once its socket exists, negotiate,
    hand it a non-composing display and start the device (control and cursor queues of
    256, 64 MiB of guest memory). The benchmarks' one start-up, so theirs agree."""
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "gpu.sock")
        argv = shlex.split(command.replace("{sock}", sock))
        # no probe connection: QEMU's C backend serves the first one and stops listening
        with daemon_process(argv, stdin=subprocess.DEVNULL) as process:
            deadline = time.monotonic() + start_timeout
            while not Path(sock).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            display = FakeQemuDisplay(compose=False)
            try:
                with Frontend.connect(sock) as frontend:
                    frontend.negotiate()
                    frontend.gpu_set_socket(display.backend_end.fileno())
                    control, _cursor = frontend.start_device(2, 256, memory_size=64 << 20)
                    yield BenchDaemon(process, display, frontend, control)
            finally:
                display.close()


class Qmp:
    """A QMP client for one command at a time (QEMU's `-qmp unix:PATH,server=on`)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        import json

        self._json = json
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        line = self.file.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        answer: dict[str, object] = self._json.loads(line)
        return answer

    def execute(self, command: str, **arguments: object) -> object:
        request = (
            {"execute": command, "arguments": arguments} if arguments else {"execute": command}
        )
        self.file.write(self._json.dumps(request).encode() + b"\n")
        self.file.flush()
        while True:
            answer = self._read()
            if "return" in answer:
                return answer["return"]
            if "error" in answer:
                raise RuntimeError(f"QMP {command}: {answer['error']}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def read_ppm(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB bytes of a binary PPM (QMP screendump's default format)."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"not an 8-bit binary PPM: {fields!r}")
    width, height = int(fields[1]), int(fields[2])
    pixels = data[pos + 1 : pos + 1 + width * height * 3]
    if len(pixels) != width * height * 3:
        raise ValueError("PPM pixels cut short")
    return width, height, pixels
