"""vhost-device-video's command path on the null backend: fuzzed sequences of
commands, mostly well-formed (three stream ids, four resource ids, both queues, memory
entries in or outside guest memory, every response room from none to plenty) with
raw bytes among them, and eventq buffers of any size.

Invariants:
- nothing but VhostUserError escapes `handle_queue`;
- a chain is answered at most once (the driver side raises on a second answer), with a
  used length at most its writable size, and an answer of 8 bytes or more starts with
  one of the draft's response types and the request's stream id;
- once every stream is destroyed, every command posted has been answered.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check

from vhost_device_video.device import VideoBackend
from vhost_device_video.null import NullBackend
from vhost_device_video.protocol import (
    HDR,
    MAX_PLANES,
    MEM_ENTRY,
    PARAMS,
    RESOURCE_CREATE,
    RESOURCE_QUEUE,
    STREAM_CREATE,
    Cmd,
    Format,
    Resp,
)

QUEUE = 64
ROOMS = [0, 4, 8, 16, 24, 64, 4096]
RESPONSES = {int(r) for r in Resp}


def _request(fdp: atheris.FuzzedDataProvider, rig: Rig) -> bytes:
    kind = fdp.ConsumeIntInRange(0, 15)
    cmd = 0x100 + kind if kind <= 0xE else fdp.ConsumeIntInRange(0, 0xFFFFFFFF)
    sid = fdp.PickValueInList([1, 2, 1, 7])
    queue = fdp.PickValueInList([0x100, 0x101, 0x100, 0x101, 0, 0x1234])
    rid = fdp.ConsumeIntInRange(0, 3)
    head = HDR.pack(cmd, sid)
    if cmd == Cmd.STREAM_CREATE:
        fmt = fdp.PickValueInList([Format.FWHT, Format.H264, Format.NV12, 0, 0x1000])
        mem = fdp.PickValueInList([0, 0, 1, 9])
        return head + STREAM_CREATE.pack(mem, 0, fmt, fdp.ConsumeBytes(8))
    if cmd == Cmd.RESOURCE_CREATE:
        count = fdp.ConsumeIntInRange(0, 3)
        entries = b""
        for _ in range(count):
            gpa = rig.alloc(4096)
            addr = (
                gpa if gpa is not None and fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 1 << 40)
            )
            entries += MEM_ENTRY.pack(addr, fdp.PickValueInList([4096, 0, 1 << 20, 64]))
        layout, planes = fdp.PickValueInList([1, 1, 2, 3]), fdp.ConsumeIntInRange(0, 9)
        counts = [fdp.ConsumeIntInRange(0, 3) for _ in range(MAX_PLANES)]
        offsets = [fdp.PickValueInList([0, 0, 100, 5000]) for _ in range(MAX_PLANES)]
        body = RESOURCE_CREATE.pack(queue, rid, layout, planes, *offsets, *counts)
        return head + body + entries
    if cmd == Cmd.RESOURCE_QUEUE:
        sizes = [fdp.PickValueInList([0, 1, 100, 5000]) for _ in range(MAX_PLANES)]
        num = fdp.ConsumeIntInRange(0, 9)
        return head + RESOURCE_QUEUE.pack(queue, rid, fdp.ConsumeIntInRange(0, 99), num, *sizes)
    if cmd in (Cmd.SET_PARAMS, Cmd.SET_PARAMS_EXT):
        body = bytearray(fdp.ConsumeBytes(PARAMS.size + 8).ljust(PARAMS.size + 8, b"\0"))
        struct.pack_into("<II", body, 0, queue, fdp.PickValueInList([3, 4, 0x1006, 77]))
        struct.pack_into("<I", body, 44, fdp.ConsumeIntInRange(0, 9))
        return head + bytes(body)
    tail = struct.pack("<II", queue, fdp.PickValueInList([0, 1, 2, 3, 0x1002]))
    tail += struct.pack("<II", fdp.PickValueInList([0x1002, 0x100, 0x4242]), 0)
    return (head + tail)[: fdp.PickValueInList([8, 16, 24, 24, 3])]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rig = Rig([QUEUE, QUEUE])
    backend = VideoBackend(NullBackend())
    backend.memory_changed(rig.device_memory)
    backend.attach([rig.worker], rig.vrings)
    cmdq, eventq = rig.vrings
    posted: dict[int, tuple[int, int]] = {}  # head -> (writable size, stream id)
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 40)):
            if fdp.ConsumeIntInRange(0, 7) == 0:
                rig.post(1, [], [fdp.PickValueInList([8, 4, 64])])
                rig.publish(1)
                backend.handle_queue(eventq)
                rig.used(1)
                continue
            request = _request(fdp, rig)
            room = fdp.PickValueInList(ROOMS)
            head = rig.post(0, [request] if request else [], [room] if room else [])
            if head is None:
                break
            posted[head] = (room, HDR.unpack_from(request)[1] if len(request) >= 8 else 0)
            rig.publish(0)
            backend.handle_queue(cmdq)
            _reap(rig, posted)
        for sid in (1, 2, 7):  # destroying every stream answers whatever it held
            rig.reset_scratch()
            head = rig.post(0, [HDR.pack(Cmd.STREAM_DESTROY, sid)], [8])
            if head is None:
                break
            posted[head] = (8, sid)
            rig.publish(0)
            backend.handle_queue(cmdq)
            _reap(rig, posted)
        else:
            check(not posted, f"{len(posted)} commands never answered")
    finally:
        backend.close()
        rig.close()


def _reap(rig: Rig, posted: dict[int, tuple[int, int]]) -> None:
    for head, length in rig.used(0):
        room, sid = posted.pop(head)
        check(length <= room, f"command {head}: {length} bytes used of {room}")
        if length >= 8:
            kind, stream_id = HDR.unpack(rig.written(0, head, 8))
            check(kind in RESPONSES, f"command {head}: response type {kind:#x}")
            check(stream_id in (sid, 0), f"command {head}: stream {stream_id}, sent {sid}")
