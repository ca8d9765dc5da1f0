"""The guest's side for the frontend tests: the core's frontend as the VMM, the GPU
commands encoded here with struct (not with the device's own codecs), and the fake QEMU
display on the socket the device gets with GPU_SET_SOCKET."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.protocol import DisplayMode
from vhost_device_gpu.renderer import Renderer
from vhost_device_gpu.testing import FakeQemuDisplay
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import connected_frontend

# command ids (virtio 1.2 §5.7.6.7)
GET_DISPLAY_INFO, CREATE_2D, UNREF, SET_SCANOUT, FLUSH, TRANSFER = range(0x100, 0x106)
ATTACH, DETACH, CAPSET_INFO, CAPSET, GET_EDID, ASSIGN_UUID = range(0x106, 0x10C)
CREATE_BLOB, SET_SCANOUT_BLOB = 0x10C, 0x10D
UPDATE_CURSOR, MOVE_CURSOR = 0x300, 0x301
OK_NODATA, OK_DISPLAY_INFO, OK_CAPSET_INFO, OK_CAPSET, OK_EDID, OK_UUID = range(0x1100, 0x1106)
ERR_UNSPEC, ERR_OOM, ERR_SCANOUT, ERR_RESOURCE, ERR_CONTEXT, ERR_PARAMETER = range(0x1200, 0x1206)
FEATURE_EDID, FEATURE_UUID, FEATURE_BLOB = 1 << 1, 1 << 2, 1 << 3
BGRX, BGRA, ARGB, XRGB, RGBA, XBGR, ABGR, RGBX = 2, 1, 3, 4, 67, 68, 121, 134


def hdr(kind: int, flags: int = 0, fence: int = 0, ctx: int = 0, ring: int = 0) -> bytes:
    return struct.pack("<IIQIB3x", kind, flags, fence, ctx, ring)


def rect(x: int, y: int, w: int, h: int) -> bytes:
    return struct.pack("<IIII", x, y, w, h)


def create_2d(rid: int, fmt: int, w: int, h: int) -> bytes:
    return hdr(CREATE_2D) + struct.pack("<IIII", rid, fmt, w, h)


def attach(rid: int, entries: list[tuple[int, int]]) -> bytes:
    body = b"".join(struct.pack("<QI4x", a, n) for a, n in entries)
    return hdr(ATTACH) + struct.pack("<II", rid, len(entries)) + body


def transfer(rid: int, x: int, y: int, w: int, h: int, offset: int) -> bytes:
    return hdr(TRANSFER) + rect(x, y, w, h) + struct.pack("<QI4x", offset, rid)


def set_scanout(scanout: int, rid: int, x: int, y: int, w: int, h: int) -> bytes:
    return hdr(SET_SCANOUT) + rect(x, y, w, h) + struct.pack("<II", scanout, rid)


def flush(rid: int, x: int, y: int, w: int, h: int) -> bytes:
    return hdr(FLUSH) + rect(x, y, w, h) + struct.pack("<I4x", rid)


def rid_cmd(kind: int, rid: int) -> bytes:
    return hdr(kind) + struct.pack("<I4x", rid)


def create_blob(rid: int, size: int, entries: list[tuple[int, int]], mem: int = 1) -> bytes:
    body = b"".join(struct.pack("<QI4x", a, n) for a, n in entries)
    return hdr(CREATE_BLOB) + struct.pack("<IIIIQQ", rid, mem, 0, len(entries), 0, size) + body


def scanout_blob(
    scanout: int, rid: int, w: int, h: int, fmt: int, stride: int, offset: int = 0,
    r: tuple[int, int, int, int] | None = None,
) -> bytes:  # fmt: skip
    x, y, rw, rh = r or (0, 0, w, h)
    return (
        hdr(SET_SCANOUT_BLOB) + rect(x, y, rw, rh)
        + struct.pack("<IIIII4x", scanout, rid, w, h, fmt)
        + struct.pack("<IIII", stride, 0, 0, 0) + struct.pack("<IIII", offset, 0, 0, 0)
    )  # fmt: skip


def cursor(
    kind: int, scanout: int, x: int, y: int, rid: int = 0, hx: int = 0, hy: int = 0
) -> bytes:
    return hdr(kind) + struct.pack("<III4xIII4x", scanout, x, y, rid, hx, hy)


def resp_type(answer: bytes) -> int:
    return struct.unpack_from("<I", answer)[0] if len(answer) >= 4 else -1


@dataclass
class Gpu:
    frontend: Frontend
    control: FrontendQueue
    cursorq: FrontendQueue
    display: FakeQemuDisplay | None

    def submit(self, queue: FrontendQueue, payload: bytes, room: int) -> bytes:
        ram = self.frontend.ram
        assert ram is not None
        src = ram.alloc(max(len(payload), 1))
        ram.memory.write(src, payload)
        bufs = [(src, len(payload), False)]
        if room:
            bufs.append((ram.alloc(room), room, True))
        head = queue.driver.add(bufs)
        queue.publish()
        ((used, length),) = queue.wait_used(1)
        assert used == head
        return ram.memory.read(bufs[1][0], length) if room else b""

    def cmd(self, payload: bytes, room: int = 24) -> bytes:
        """One control command; its response."""
        return self.submit(self.control, payload, room)

    def ok(self, payload: bytes) -> None:
        answer = self.cmd(payload)
        assert resp_type(answer) == OK_NODATA, hex(resp_type(answer))

    def status(self, payload: bytes) -> int:
        return resp_type(self.cmd(payload))

    def guest_buffer(self, data: bytes) -> int:
        ram = self.frontend.ram
        assert ram is not None
        gpa = ram.alloc(max(len(data), 1), align=4096)
        ram.memory.write(gpa, data)
        return gpa


@contextmanager
def gpu(
    tmp_path: Path,
    *,
    mode: str = "2d",
    headless: bool = False,
    display: bool = True,
    features: int | None = None,
    modes: list[DisplayMode] | None = None,
    edid: bytes = b"",
    capsets: tuple[str, ...] = (),
    renderer: Callable[[GpuConfig], Renderer] | None = None,
) -> Iterator[Gpu]:
    config = GpuConfig(mode, capsets, headless=headless)
    fake = FakeQemuDisplay(modes, edid) if display else None
    try:
        factory = (lambda: GpuBackend(config, renderer)) if renderer else lambda: GpuBackend(config)
        with connected_frontend(factory, tmp_path / "gpu.sock") as frontend:
            if fake is not None:
                frontend.negotiate()  # QEMU: features first, the socket at DRIVER_OK
                frontend.gpu_set_socket(fake.backend_end.fileno())
                frontend.features = 0
            control, cursorq = frontend.start_device(
                2, 256, memory_size=64 << 20, features=features
            )
            yield Gpu(frontend, control, cursorq, fake)
    finally:
        if fake is not None:
            fake.close()
