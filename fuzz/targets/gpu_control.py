"""vhost-device-gpu's control and cursor queues: fuzzed sequences of every command
(2D, blobs, 3D ids, unknown), with fuzzed resource ids, formats, rectangles, offsets,
strides and backing entries (inside the rig's memory, at its edge, outside it), short
or split over descriptors, with fuzzed response room; updates go to a display that
wants every pixel, so flushes and scanouts really copy.

Invariants:
- nothing but VhostUserError escapes `handle_queue`;
- every control request with room for a header is answered with a known response
  type, within its room; a fenced one echoes its fence id;
- every update the display gets lies inside the scanout's surface and carries exactly
  width x height x 4 bytes; host memory for resources stays under the renderer's limit;
- afterwards GET_DISPLAY_INFO is answered OK.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check, chunks

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.display import HeadlessDisplay
from vhost_device_gpu.protocol import DisplayMode, Rect, Resp
from vhost_device_gpu.renderer import Renderer2D

MEMORY = 1 << 20
FEATURES = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 32)  # EDID, UUID, BLOB, VERSION_1
COMMANDS = [0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10A,
            0x10B, 0x10C, 0x10D, 0x200, 0x207, 0x1FF, 0x300]  # fmt: skip
FORMATS = [1, 2, 3, 4, 67, 68, 121, 134, 0, 5]
KNOWN = {int(r) for r in Resp}


class PixelDisplay(HeadlessDisplay):
    """A display that takes every pixel, checking each update against its surface."""

    wants_pixels = True

    def __init__(self) -> None:
        super().__init__([DisplayMode(Rect(0, 0, 64, 48), True)])
        self.surfaces: dict[int, tuple[int, int]] = {}

    def scanout(self, scanout: int, width: int, height: int) -> None:
        self.surfaces[scanout] = (width, height)

    def update(self, scanout: int, rect: Rect, fill) -> None:  # type: ignore[no-untyped-def]
        width, height = self.surfaces.get(scanout, (0, 0))
        check(rect.inside(width, height), f"update {rect} outside {width}x{height}")
        buf = bytearray(rect.width * rect.height * 4 + 8)
        view = memoryview(buf)[: rect.width * rect.height * 4]
        fill(view)
        check(buf[-8:] == bytes(8), "an update wrote past its pixels")


def u32(fdp: atheris.FuzzedDataProvider, choices: list[int]) -> int:
    if fdp.ConsumeBool():
        return fdp.PickValueInList(choices)
    return fdp.ConsumeIntInRange(0, 0xFFFFFFFF)


def command(fdp: atheris.FuzzedDataProvider, rig: Rig) -> bytes:
    kind = fdp.PickValueInList(COMMANDS)
    flags = fdp.PickValueInList([0, 1, 3])
    head = struct.pack("<IIQIB3x", kind, flags, fdp.ConsumeIntInRange(0, 1 << 40), 0, 0)
    small = [0, 1, 2, 3, 4, 16, 63, 64, 65, 0xFFFFFFFF]
    body = b""
    for _ in range(fdp.ConsumeIntInRange(0, 10)):
        field = fdp.ConsumeIntInRange(0, 3)
        if field == 0:
            body += struct.pack("<I", u32(fdp, small))
        elif field == 1:
            body += struct.pack("<I", fdp.PickValueInList(FORMATS))
        elif field == 2:  # a backing entry: address and length
            addr = fdp.PickValueInList(
                [rig.scratch, rig.scratch + 4096, MEMORY - 16, MEMORY, 1 << 40]
            )
            body += struct.pack("<QI4x", addr, u32(fdp, [16, 4096, 64 * 48 * 4, 1 << 20]))
        else:
            body += struct.pack("<Q", fdp.PickValueInList([0, 4, 4096, MEMORY, 1 << 63]))
    if fdp.ConsumeBool():
        body += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    return head + body


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    display = PixelDisplay()
    limit = 1 << 20
    backend = GpuBackend(GpuConfig("2d"), lambda _c: Renderer2D(max_hostmem=limit))
    backend.display = display
    rig = Rig([64, 16], memory=MEMORY)
    backend.attach([rig.worker], rig.vrings)
    backend.memory_changed(rig.device_memory)
    backend.acked_features(FEATURES)
    control, cursorq = rig.vrings
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 24)):
            queue = 1 if fdp.ConsumeIntInRange(0, 7) == 0 else 0
            rig.reset_scratch()
            request = command(fdp, rig)
            room = fdp.PickValueInList([24, 0, 10, 408, 1056, 64])
            cuts = [
                fdp.ConsumeIntInRange(0, len(request)) for _ in range(fdp.ConsumeIntInRange(0, 2))
            ]
            head = rig.post(queue, chunks(request, cuts), [room] if room else [])
            if head is None:
                continue
            rig.publish(queue)
            backend.handle_queue(cursorq if queue else control)
            for used_head, length in rig.used(queue):
                check(used_head == head, "a used entry for a chain not posted")
                check(length <= room, f"answer of {length} bytes in {room}")
                if queue == 0 and room >= 24:
                    answer = rig.written(0, head, length)
                    (kind, flags, fence) = struct.unpack_from("<IIQ", answer)
                    check(kind in KNOWN, f"unknown response type {kind:#x}")
                    if struct.unpack_from("<I", request, 4)[0] & 1 and len(request) >= 24:
                        check(
                            flags & 1 and fence == struct.unpack_from("<Q", request, 8)[0],
                            "fence lost",
                        )
            renderer = backend.renderer
            assert isinstance(renderer, Renderer2D)
            check(renderer.hostmem <= limit, "host memory over the limit")
        rig.reset_scratch()
        head = rig.post(0, [struct.pack("<IIQIB3x", 0x100, 0, 0, 0, 0)], [408])
        if head is not None:
            rig.publish(0)
            backend.handle_queue(control)
            ((_, length),) = rig.used(0)
            answer = rig.written(0, head, length)
            check(struct.unpack_from("<I", answer)[0] == Resp.OK_DISPLAY_INFO, "no display info")
    finally:
        backend.close()
        rig.close()
