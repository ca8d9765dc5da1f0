"""A virtio-snd device (null audio backend) on a Rig, for the sound fuzz targets."""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check, chunks

from vhost_device_sound.backends.null import NullBackend
from vhost_device_sound.device import SoundDevice
from vhost_device_sound.protocol import (
    QUEUE_SIZE,
    VIRTIO_SND_F_CTLS,
    Code,
    Format,
    Queue,
    Rate,
    Status,
)
from vhost_device_sound.switches import Switches
from vhost_user_core.protocol import STANDARD_FEATURES

CODES = [int(c) for c in Code] + [0, 0xFFFF, 0x10000]
STATUSES = {int(s) for s in Status}


class SoundRig:
    def __init__(self, *, controls: bool, enabled: frozenset[object] | None = None) -> None:
        self.rig = Rig([QUEUE_SIZE] * len(Queue), memory=4 << 20, scratch=3 << 20)
        self.switches = Switches() if enabled is None else Switches(enabled)  # type: ignore[arg-type]
        self.device = SoundDevice(NullBackend(), self.switches, controls=controls)
        self.device.attach([self.rig.worker], self.rig.vrings)
        self.device.acked_features(STANDARD_FEATURES | (VIRTIO_SND_F_CTLS if controls else 0))

    def control(self, request: bytes, room: int, cuts: list[int] | None = None) -> bytes | None:
        """Post one control request, run the queue; the response, or None if the ring
        had no room (the request was not posted)."""
        rig = self.rig
        head = rig.post(Queue.CONTROL, chunks(request, cuts or []), [room] if room else [])
        if head is None:
            return None
        rig.publish(Queue.CONTROL)
        self.device.handle_queue(rig.vrings[Queue.CONTROL])
        used = dict(rig.used(Queue.CONTROL))
        check(head in used, "control request not answered")
        length = used[head]
        check(length <= room, f"control answer of {length} bytes in {room}")
        answer = rig.written(Queue.CONTROL, head, length)
        if room >= 4 and request:
            check(length >= 4, "control answer without a status")
        if length >= 4:
            (status,) = struct.unpack_from("<I", answer)
            check(status in STATUSES, f"control status {status:#x}")
        del rig.writable[Queue.CONTROL][head]
        return answer

    def good_pcm_info(self) -> None:
        """The request a driver sends first: both streams' info, answered OK."""
        self.rig.reset_scratch()
        answer = self.control(struct.pack("<IIII", Code.PCM_INFO, 0, 2, 32), 4 + 64)
        check(answer is not None, "no room for the good request")
        assert answer is not None
        check(answer[:4] == struct.pack("<I", Status.OK) and len(answer) == 68, "PCM_INFO")

    def close(self) -> None:
        self.device.close()
        self.rig.close()


def fuzzed_request(fdp: atheris.FuzzedDataProvider, streams: int = 2) -> bytes:
    """A control request of a real shape with fuzzed fields, or raw bytes (1 in 8)."""
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 7:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    code = fdp.PickValueInList(CODES)

    def small() -> int:
        return fdp.ConsumeIntInRange(0, streams + 1)

    if code in (Code.PCM_INFO, Code.CHMAP_INFO, Code.JACK_INFO, Code.CTL_INFO):
        size = fdp.PickValueInList([32, 24, 40, 16, 0, 0xFFFFFFFF])
        body = struct.pack("<III", small(), small(), size)
    elif code == Code.PCM_SET_PARAMS:
        period = fdp.PickValueInList([4096, 1024, 0, 3, 1 << 20, (1 << 20) + 4, 0xFFFFFFFF])
        buffer = period * fdp.ConsumeIntInRange(0, 8)
        fmt = fdp.PickValueInList([Format.S16, Format.S16, Format.FLOAT, Format.U8, 0, 200])
        rate = fdp.PickValueInList([Rate.R48000, Rate.R44100, Rate.R8000, 0, 200])
        channels = fdp.PickValueInList([2, 1, 0, 8, 255])
        features = 0 if fdp.ConsumeBool() else fdp.ConsumeInt(4) & 0xFFFFFFFF
        body = struct.pack(
            "<IIIIBBBx",
            small(),
            buffer & 0xFFFFFFFF,
            period,
            features,
            channels,
            int(fmt),
            int(rate),
        )
    elif code == Code.CTL_WRITE:
        body = struct.pack("<I", small()) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    else:
        body = struct.pack("<I", small())
    body = struct.pack("<I", code) + body
    if fdp.ConsumeIntInRange(0, 7) == 7:
        body = body[: fdp.ConsumeIntInRange(0, len(body))]
    return body
