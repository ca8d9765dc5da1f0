"""The guest proxy's side of the cross-domain tests: the core's frontend as VMM and
guest driver (rings, guest blobs, the host-visible region through SHMEM_MAP), the
cross-domain commands and a minimal Wayland wire codec, all written here with struct
from the specs (not with the device's own codecs), plus a headless weston to talk to."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gpu_rig import CREATE_BLOB, hdr, resp_type

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.testing import FakeQemuDisplay
from vhost_user_core.frontend import Frontend, FrontendQueue, VmmSharedMemory
from vhost_user_core.testing.harness import connected_frontend

# virtio-gpu
CTX_CREATE, CTX_DESTROY, CTX_ATTACH, CTX_DETACH = 0x200, 0x201, 0x202, 0x203
SUBMIT_3D, MAP_BLOB, UNMAP_BLOB = 0x207, 0x208, 0x209
OK_NODATA, OK_MAP_INFO = 0x1100, 0x1106
ERR_UNSPEC, ERR_OOM, ERR_RESOURCE, ERR_CONTEXT, ERR_PARAMETER = (
    0x1200,
    0x1201,
    0x1203,
    0x1204,
    0x1205,
)
FLAG_FENCE, FLAG_RING_IDX = 1, 2
BLOB_GUEST, BLOB_HOST3D = 1, 2
MAPPABLE, SHAREABLE = 1, 2
PAGE = 4096

# cross-domain
INIT, IMAGE_REQ, POLL, SEND, RECEIVE, READ, WRITE = range(1, 8)
ID_BLOB, ID_READ_PIPE, ID_WRITE_PIPE = 1, 3, 4
CHANNEL_WAYLAND = 1
R8 = 0x20203852
XRGB8888 = 0x34325258


def cd_header(cmd: int, size: int) -> bytes:
    return struct.pack("<BBHI", cmd, 0, size, 0)


def cd_init(query: int, channel: int, channel_type: int = CHANNEL_WAYLAND) -> bytes:
    return cd_header(INIT, 20) + struct.pack("<III", query, channel, channel_type)


def cd_image_req(width: int, height: int, fmt: int) -> bytes:
    return cd_header(IMAGE_REQ, 24) + struct.pack("<IIII", width, height, fmt, 0)


def cd_poll() -> bytes:
    return cd_header(POLL, 8)


def cd_send(data: bytes, idents: list[tuple[int, int, int]] = ()) -> bytes:  # type: ignore[assignment]
    ids = [i for i, _, _ in idents] + [0] * (28 - len(idents))
    types = [t for _, t, _ in idents] + [0] * (28 - len(idents))
    sizes = [s for _, _, s in idents] + [0] * (28 - len(idents))
    body = struct.pack("<II28I28I28I", len(idents), len(data), *ids, *types, *sizes)
    return cd_header(SEND, 352 + len(data)) + body + data


def cd_write(identifier: int, data: bytes, hang_up: bool = False) -> bytes:
    return (
        cd_header(WRITE, 24 + len(data))
        + struct.pack("<IIII", identifier, int(hang_up), len(data), 0)
        + data
    )


@dataclass
class Received:
    """What one signalled POLL left in the channel ring."""

    cmd: int
    data: bytes
    idents: list[tuple[int, int, int]] = field(default_factory=list)
    hang_up: bool = False
    identifier: int = 0


def parse_ring(ring: bytes) -> Received:
    cmd = ring[0]
    if cmd == RECEIVE:
        count, size = struct.unpack_from("<II", ring, 8)
        v = struct.unpack_from("<28I28I28I", ring, 16)
        idents = [(v[i], v[28 + i], v[56 + i]) for i in range(count)]
        return Received(cmd, ring[352 : 352 + size], idents)
    if cmd == READ:
        identifier, hang_up, size, _ = struct.unpack_from("<IIII", ring, 8)
        return Received(cmd, ring[24 : 24 + size], hang_up=bool(hang_up), identifier=identifier)
    raise AssertionError(f"ring holds command {cmd}")


# -- the Wayland wire (wayland.freedesktop.org/docs/html/ch04.html) -----------------


def wl_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<I", len(raw)) + raw + bytes(-len(raw) % 4)


def wl_msg(obj: int, opcode: int, *args: int | str) -> bytes:
    body = b"".join(
        wl_string(a) if isinstance(a, str) else struct.pack("<I", a & 0xFFFFFFFF) for a in args
    )
    return struct.pack("<II", obj, (8 + len(body)) << 16 | opcode) + body


@dataclass
class WlEvent:
    obj: int
    opcode: int
    body: bytes

    def uint(self, index: int) -> int:
        return int(struct.unpack_from("<I", self.body, 4 * index)[0])

    def string(self, offset: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<I", self.body, offset)
        text = self.body[offset + 4 : offset + 4 + length - 1].decode()
        return text, offset + 4 + (length + 3) // 4 * 4


class WlDecoder:
    """Events out of a byte stream that RECEIVEs may split anywhere."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[WlEvent]:
        self.buffer += data
        events = []
        while len(self.buffer) >= 8:
            obj, word = struct.unpack_from("<II", self.buffer)
            size = word >> 16
            if size < 8 or len(self.buffer) < size:
                break
            events.append(WlEvent(obj, word & 0xFFFF, self.buffer[8:size]))
            self.buffer = self.buffer[size:]
        return events


# -- the guest ---------------------------------------------------------------------------


@dataclass
class Guest:
    frontend: Frontend
    control: FrontendQueue
    shmem: VmmSharedMemory
    done: dict[int, int] = field(default_factory=dict)

    @property
    def ram(self):  # type: ignore[no-untyped-def]
        assert self.frontend.ram is not None
        return self.frontend.ram

    def post(self, payload: bytes, room: int = 64) -> tuple[int, int]:
        src = self.ram.alloc(max(len(payload), 1))
        self.ram.memory.write(src, payload)
        dst = self.ram.alloc(room)
        head = self.control.driver.add([(src, len(payload), False), (dst, room, True)])
        self.control.publish()
        return head, dst

    def wait(self, posted: tuple[int, int], timeout: float = 10.0) -> bytes:
        head, dst = posted
        deadline = time.monotonic() + timeout
        while head not in self.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"command at head {head} is still held")
            try:
                for used, length in self.control.wait_used(1, timeout=left):
                    self.done[used] = length
            except TimeoutError:
                continue
        return self.ram.memory.read(dst, self.done.pop(head))

    def answered(self, posted: tuple[int, int], timeout: float = 0.3) -> bool:
        try:
            self.done[posted[0]] = len(self.wait(posted, timeout))
        except TimeoutError:
            return False
        return True

    def cmd(self, payload: bytes, room: int = 64) -> bytes:
        return self.wait(self.post(payload, room))

    def status(self, payload: bytes) -> int:
        return resp_type(self.cmd(payload))

    # -- virtio-gpu ------------------------------------------------------------------

    def ctx_create(self, ctx: int, capset: int = 5, name: bytes = b"wayland-proxy") -> int:
        body = struct.pack("<II64s", len(name), capset, name)
        return self.status(hdr(CTX_CREATE, ctx=ctx) + body)

    def guest_blob(self, rid: int, size: int = PAGE) -> tuple[int, int]:
        """A mappable guest blob (a ring); returns its status and guest address."""
        gpa = self.ram.alloc(size, align=PAGE)
        entry = struct.pack("<QI4x", gpa, size)
        cmd = hdr(CREATE_BLOB) + struct.pack("<IIIIQQ", rid, BLOB_GUEST, MAPPABLE, 1, 0, size)
        return self.status(cmd + entry), gpa

    def attach(self, ctx: int, rid: int) -> int:
        return self.status(hdr(CTX_ATTACH, ctx=ctx) + struct.pack("<I4x", rid))

    def submit(self, ctx: int, commands: bytes, *, ring: int | None = None) -> tuple[int, int]:
        """Post a SUBMIT_3D (fenced on `ring` if given); wait for it with `wait`."""
        flags, fence = (FLAG_FENCE | FLAG_RING_IDX, 1) if ring is not None else (0, 0)
        header = hdr(SUBMIT_3D, flags, fence, ctx, ring or 0)
        return self.post(header + struct.pack("<I4x", len(commands)) + commands)

    def run(self, ctx: int, commands: bytes) -> int:
        return resp_type(self.wait(self.submit(ctx, commands)))

    def host_blob(
        self, ctx: int, rid: int, blob_id: int, size: int, flags: int = MAPPABLE | SHAREABLE
    ) -> int:
        cmd = hdr(CREATE_BLOB, ctx=ctx) + struct.pack(
            "<IIIIQQ", rid, BLOB_HOST3D, flags, 0, blob_id, size
        )
        return self.status(cmd)

    def map_blob(self, rid: int, offset: int) -> tuple[int, int]:
        answer = self.cmd(hdr(MAP_BLOB) + struct.pack("<I4xQ", rid, offset))
        return resp_type(answer), struct.unpack_from("<I", answer, 24)[0] if len(
            answer
        ) >= 28 else 0

    def unmap_blob(self, rid: int) -> int:
        return self.status(hdr(UNMAP_BLOB) + struct.pack("<I4x", rid))


@dataclass
class Proxy:
    """An initialised cross-domain context: query ring 1, channel ring 2 on context `ctx`."""

    guest: Guest
    ctx: int
    query_gpa: int
    channel_gpa: int

    def poll(self, timeout: float = 10.0) -> Received:
        answer = self.guest.wait(self.guest.submit(self.ctx, cd_poll(), ring=1), timeout)
        assert resp_type(answer) == OK_NODATA, hex(resp_type(answer))
        return parse_ring(self.guest.ram.memory.read(self.channel_gpa, PAGE))

    def send(self, data: bytes, idents: list[tuple[int, int, int]] = ()) -> int:  # type: ignore[assignment]
        return self.guest.run(self.ctx, cd_send(data, idents))

    def image_requirements(self, width: int, height: int, fmt: int) -> tuple[int, int, int]:
        """(stride, size, blob_id) of the query ring's answer."""
        assert self.guest.run(self.ctx, cd_image_req(width, height, fmt)) == OK_NODATA
        raw = self.guest.ram.memory.read(self.query_gpa, 64)
        strides = struct.unpack_from("<4I", raw)
        size, blob_id = struct.unpack_from("<QI", raw, 40)
        return strides[0], size, blob_id


def setup_proxy(guest: Guest, ctx: int = 1, init: bool = True) -> Proxy:
    assert guest.ctx_create(ctx) == OK_NODATA
    status, query = guest.guest_blob(1)
    assert status == OK_NODATA
    status, channel = guest.guest_blob(2)
    assert status == OK_NODATA
    assert guest.attach(ctx, 1) == OK_NODATA and guest.attach(ctx, 2) == OK_NODATA
    if init:
        assert guest.run(ctx, cd_init(1, 2)) == OK_NODATA
    return Proxy(guest, ctx, query, channel)


@contextmanager
def cross_domain_gpu(
    tmp_path: Path,
    wayland_socket: str | None,
    display: FakeQemuDisplay | None = None,
    features: int | None = None,
    mode: str = "2d",
) -> Iterator[Guest]:
    """The device with `--wayland-socket` beside the `mode` renderer, started as a VMM
    with shared memory would (SHMEM negotiated, a backend channel served); with
    `display`, QEMU's display end."""
    config = GpuConfig(mode, headless=display is None, wayland_socket=wayland_socket)
    with connected_frontend(lambda: GpuBackend(config), tmp_path / "gpu.sock") as frontend:
        if display is not None:
            frontend.negotiate()
            frontend.gpu_set_socket(display.backend_end.fileno())
            frontend.features = 0
        (control, _cursor) = frontend.start_device(2, 256, memory_size=32 << 20, features=features)
        shmem = frontend.open_shmem()
        yield Guest(frontend, control, shmem)


# -- a real compositor ---------------------------------------------------------------------

#: The headless output's size: small, so a capture is quick to check.
OUTPUT_W, OUTPUT_H = 64, 48


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@contextmanager
def headless_weston(tmp_path: Path) -> Iterator[Path]:
    """Debian's weston 14, headless with the pixman renderer, kiosk shell (no helper
    client), `--debug` for weston_capture_v1, in a private runtime dir."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    weston = shutil.which("weston")
    assert weston, "weston is in [tool.vhost-device] debian: `python3 xtask bootstrap`"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("DISPLAY", None)
    log = (tmp_path / "weston.log").open("wb")
    proc = subprocess.Popen(
        [
            weston, "--backend=headless", "--renderer=pixman", "--shell=kiosk", "--no-config",
            "--debug", "--idle-time=0", "--socket=wl-test",
            f"--width={OUTPUT_W}", f"--height={OUTPUT_H}",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    socket_path = runtime / "wl-test"
    try:
        deadline = time.monotonic() + 20
        while not _listening(socket_path):
            assert proc.poll() is None, (tmp_path / "weston.log").read_text()
            assert time.monotonic() < deadline, "weston did not listen in 20 s"
            time.sleep(0.05)
        yield socket_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
