"""vhost-device-gpu's control queue in `-g virglrenderer`: fuzzed sequences of the 3D
commands (contexts by capset, 3D resources, attach and detach, transfers both ways with
fuzzed boxes, strides and offsets, SUBMIT_3D streams built from virgl commands with
fuzzed handles and lengths, or raw dwords), the 2D commands on virglrenderer's
resources, blob commands, all with fuzzed fences, against the real virglrenderer
(llvmpipe). One renderer serves every input (virglrenderer is one per process); each
input starts from a device reset.

Invariants:
- nothing but VhostUserError escapes `handle_queue`;
- every control request with room for a header is answered with a known response type
  within its room, a fenced one with its fence: held answers come back once the
  renderer's fences signal (the worker's poll fd), within 10 s;
- every update the display gets lies inside the scanout's surface and fills exactly its
  width x height x 4 bytes.
"""

from __future__ import annotations

import struct
import time

import atheris
from harness import Rig, check, chunks

from targets.gpu_control import PixelDisplay
from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.protocol import Resp
from vhost_device_gpu.renderer.virgl import VirglRenderer

MEMORY = 1 << 20
#: Guest memory for resource backing, apart from the rig's scratch.
BACKING = 64 << 10
FEATURES = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 4) | (1 << 32)  # VIRGL EDID UUID CTX_INIT V1
KNOWN = {int(r) for r in Resp}
COMMANDS = [0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10C, 0x10D,
            0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, 0x207, 0x207, 0x208,
            0x209]  # fmt: skip
#: virgl formats: B8G8R8A8, B8G8R8X8, R8G8B8A8, R8 (buffers), Z24S8, invalid.
FORMATS = [1, 2, 67, 64, 19, 0, 9999]
#: Gallium targets: buffer, 2D, 3D, cube, 2D array, invalid.
TARGETS = [0, 2, 3, 4, 8, 99]
#: virgl commands with a payload shape: (op, object type, dword count).
VIRGL_COMMANDS = [
    (1, 8, 5),  # CREATE_OBJECT(SURFACE): handle, res, format, level, layers
    (5, 0, 3),  # SET_FRAMEBUFFER_STATE: nr_cbufs, zsurf, cbuf
    (7, 0, 8),  # CLEAR: buffers, rgba, depth (2), stencil
    (3, 0, 1),  # DESTROY_OBJECT
    (6, 8, 1),  # BIND_OBJECT
    (16, 0, 4),  # RESOURCE_INLINE_WRITE head (res, level, usage, stride...)
    (4, 0, 4),  # SET_VIEWPORT_STATE
]

_renderer: VirglRenderer | None = None


def renderer(config: GpuConfig) -> VirglRenderer:
    """The process's one renderer (virglrenderer is global, and starting it costs more
    than an input): each input ends by freeing what it made, as a guest would."""
    global _renderer
    if _renderer is None:
        _renderer = VirglRenderer(config.virgl)
    return _renderer


def small(fdp: atheris.FuzzedDataProvider, values: list[int]) -> int:
    if fdp.ConsumeBool():
        return fdp.PickValueInList(values)
    return fdp.ConsumeIntInRange(0, 0xFFFFFFFF)


def stream(fdp: atheris.FuzzedDataProvider) -> bytes:
    out = b""
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        if fdp.ConsumeIntInRange(0, 4) == 0:  # a raw dword
            out += struct.pack("<I", fdp.ConsumeIntInRange(0, 0xFFFFFFFF))
            continue
        op, obj, n = fdp.PickValueInList(VIRGL_COMMANDS)
        length = n if fdp.ConsumeIntInRange(0, 5) else fdp.ConsumeIntInRange(0, 0xFFFF)
        out += struct.pack("<I", op | obj << 8 | length << 16)
        for _ in range(n):
            out += struct.pack("<I", small(fdp, [0, 1, 2, 3, 4, 0x3F800000]))
    return out


def command(fdp: atheris.FuzzedDataProvider, rig: Rig, backing: int) -> bytes:
    kind = fdp.PickValueInList(COMMANDS)
    flags = fdp.PickValueInList([0, 1, 1, 3])
    ctx = fdp.PickValueInList([0, 1, 1, 2, 3])
    head = struct.pack(
        "<IIQIB3x", kind, flags, fdp.ConsumeIntInRange(0, 1 << 20), ctx, fdp.ConsumeIntInRange(0, 2)
    )
    rid = fdp.PickValueInList([0, 1, 1, 2, 3, 0xFFFFFFFF])
    w, h = fdp.PickValueInList([1, 4, 16, 64, 0, 4096]), fdp.PickValueInList([1, 4, 16, 64, 0])
    if kind == 0x200:
        init = fdp.PickValueInList([0, 1, 2, 5, 0x102, 0xFFFFFFFF])
        body = struct.pack("<II64s", fdp.ConsumeIntInRange(0, 80), init, b"fuzz")
    elif kind in (0x202, 0x203):
        body = struct.pack("<I4x", rid)
    elif kind == 0x204:
        body = struct.pack(
            "<11I4x", rid, fdp.PickValueInList(TARGETS), fdp.PickValueInList(FORMATS),
            small(fdp, [2, 2 | 1 << 18, 1 << 4, 0]), w, h, fdp.PickValueInList([0, 1, 2]),
            fdp.PickValueInList([0, 1, 6]), fdp.PickValueInList([0, 1, 9]),
            fdp.PickValueInList([0, 0, 4]), fdp.PickValueInList([0, 1]),
        )  # fmt: skip
    elif kind in (0x205, 0x206):
        box = [small(fdp, [0, 1, 4, 16, 64]) for _ in range(6)]
        body = struct.pack(
            "<6IQIIII", *box, small(fdp, [0, 4, 4096, MEMORY]), rid,
            fdp.PickValueInList([0, 1, 20]), small(fdp, [0, 4, 64, 256]), small(fdp, [0, 4096]),
        )  # fmt: skip
    elif kind == 0x207:
        s = stream(fdp)
        size = len(s) if fdp.ConsumeIntInRange(0, 6) else small(fdp, [0, 3, 1 << 20])
        body = struct.pack("<I4x", size) + s
    elif kind == 0x101:
        body = struct.pack("<IIII", rid, fdp.PickValueInList(FORMATS), w, h)
    elif kind == 0x106:
        # guest backing apart from the command buffers (transfers write into it), or
        # outside guest memory
        addr = fdp.PickValueInList([backing, backing + 4096, backing + BACKING - 16, 1 << 40])
        length = fdp.PickValueInList([16, 4096, 64 * 64 * 4, BACKING])
        body = struct.pack("<II", rid, 1) + struct.pack(
            "<QI4x", addr, min(length, BACKING - (addr - backing)) if addr < 1 << 40 else length
        )
    elif kind in (0x103, 0x104, 0x105):
        rect = struct.pack("<IIII", *(fdp.PickValueInList([0, 1, 4, 16, 64]) for _ in range(4)))
        tail = struct.pack("<II", 0, rid) if kind == 0x103 else b""
        if kind == 0x104:
            tail = struct.pack("<I4x", rid)
        if kind == 0x105:
            tail = struct.pack("<QI4x", small(fdp, [0, 4, 4096]), rid)
        body = rect + tail
    elif kind in (0x108, 0x109):
        body = struct.pack("<II", fdp.PickValueInList([0, 1, 2, 5]), fdp.PickValueInList([0, 1, 2]))
    else:
        body = struct.pack("<I4x", rid) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 48))
    if fdp.ConsumeIntInRange(0, 7) == 0:
        body = body[: fdp.ConsumeIntInRange(0, len(body))]
    return head + body


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    display = PixelDisplay()
    backend = GpuBackend(GpuConfig("virglrenderer"), renderer)
    backend.display = display
    rig = Rig([64, 16], memory=MEMORY)
    backend.attach([rig.worker], rig.vrings)
    backend.memory_changed(rig.device_memory)
    backend.acked_features(FEATURES)
    control = rig.vrings[0]
    backing = rig.ram.alloc(BACKING, 4096)
    posted: dict[int, tuple[bytes, int]] = {}
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            if len(posted) >= 48:
                break
            request = command(fdp, rig, backing)
            room = fdp.PickValueInList([24, 24, 0, 10, 64, 1400])
            cuts = [
                fdp.ConsumeIntInRange(0, len(request)) for _ in range(fdp.ConsumeIntInRange(0, 1))
            ]
            head = rig.post(0, chunks(request, cuts), [room] if room else [])
            if head is None:
                break
            posted[head] = (request, room)
            rig.publish(0)
            backend.handle_queue(control)
            rig.worker.step()
        deadline = time.monotonic() + 10
        answered: dict[int, int] = {}
        while True:
            for used_head, length in rig.used(0):
                check(used_head in posted and used_head not in answered, "a stray used entry")
                answered[used_head] = length
            if len(answered) == len(posted):
                break
            check(time.monotonic() < deadline, f"{len(posted) - len(answered)} answers held")
            time.sleep(0.001)
            rig.worker.step()
        for head, length in answered.items():
            request, room = posted[head]
            check(length <= room, f"answer of {length} bytes in {room}")
            if room >= 24:
                kind, flags, fence = struct.unpack_from("<IIQ", rig.written(0, head, length))
                check(kind in KNOWN, f"unknown response type {kind:#x}")
                if len(request) >= 24 and struct.unpack_from("<I", request, 4)[0] & 1:
                    want = struct.unpack_from("<Q", request, 8)[0]
                    check(flags & 1 and fence == want, "fence lost")
        # the guest frees everything it made: the next input starts from nothing
        r = backend.renderer
        assert isinstance(r, VirglRenderer)
        frees = [struct.pack("<IIQIB3x", 0x201, 0, 0, c, 0) for c in list(r.contexts)]
        frees += [struct.pack("<IIQIB3xI4x", 0x102, 0, 0, 0, 0, i) for i in list(r.resources)]
        for request in frees:
            rig.reset_scratch()
            head = rig.post(0, [request], [24])
            check(head is not None, "no room to free")
            rig.publish(0)
            backend.handle_queue(control)
            ((_, length),) = rig.used(0)
            (kind,) = struct.unpack_from("<I", rig.written(0, head or 0, length))
            check(kind == Resp.OK_NODATA, f"freeing answered {kind:#x}")
        check(not r.contexts and not r.resources and not r.pending, "state left over")
    finally:
        backend.close()
        rig.close()
