"""vhost-device-sound's PCM I/O: fuzzed tx and rx buffers (stream ids, sizes, headers,
status room) interleaved with the stream lifecycle (SET_PARAMS, PREPARE, START, STOP,
RELEASE), switch flips and period timers, on the null backend (timer-paced).

Invariants:
- nothing but VhostUserError escapes `handle_queue`, the worker's callbacks or timers;
- every returned buffer's used length fits its writable part; a tx buffer returns only
  its status, an rx buffer at most its data plus status, and the status is a known one;
- a stream never holds more than its buffer_bytes in flight;
- once every stream is stopped and released, every buffer the guest posted has come
  back (the Linux driver waits for that), and PCM_INFO is still answered OK.
"""

from __future__ import annotations

import struct

import atheris
from harness import check
from sound_rig import STATUSES, SoundRig

from vhost_device_sound.pcm_state import PcmState
from vhost_device_sound.protocol import Code, Direction, Format, Queue, Rate

PERIODS = [4096, 1024, 480, 64]


def _set_params(sound: SoundRig, fdp: atheris.FuzzedDataProvider, stream: int) -> None:
    period = fdp.PickValueInList(PERIODS)
    buffer = period * fdp.ConsumeIntInRange(1, 4)
    rate = fdp.PickValueInList([Rate.R48000, Rate.R44100, Rate.R8000])
    request = struct.pack(
        "<IIIIIBBBx", Code.PCM_SET_PARAMS, stream, buffer, period, 0, 2, Format.S16, rate
    )
    sound.control(request, 4)


def _command(sound: SoundRig, code: Code, stream: int) -> None:
    sound.control(struct.pack("<II", code, stream), 4)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    enabled = fdp.PickValueInList(
        [frozenset({Direction.OUTPUT}), frozenset(Direction), frozenset()]
    )
    sound = SoundRig(controls=False, enabled=enabled)
    rig = sound.rig
    posted: dict[tuple[int, int], tuple[int, int]] = {}  # (queue, head) -> (data, writable)
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 24)):
            op = fdp.ConsumeIntInRange(0, 6)
            stream = fdp.PickValueInList([0, 1, 0, 1, 2, 0xFFFFFFFF])
            if op == 0:
                code = fdp.PickValueInList(
                    [Code.PCM_PREPARE, Code.PCM_START, Code.PCM_STOP, Code.PCM_RELEASE]
                )
                _command(sound, code, min(stream, 2))
            elif op == 1:
                _set_params(sound, fdp, min(stream, 2))
            elif op in (2, 3):
                queue = Queue.TX if op == 2 else Queue.RX
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    _post(sound, fdp, queue, stream, posted)
                rig.publish(queue)
                sound.device.handle_queue(rig.vrings[queue])
            elif op == 4:
                rig.worker.step(timers=fdp.ConsumeIntInRange(1, 6))
            elif op == 5:
                sound.switches.set(fdp.PickValueInList(list(Direction)), fdp.ConsumeBool())
                rig.worker.step(timers=0)
            else:
                rig.reset_scratch() if not posted else None
            _reap(sound, posted)
            for s in sound.device.streams:
                held = (
                    s.played.held_bytes
                    if s.direction is Direction.OUTPUT
                    else sum(m.size for m in s.pending)
                )
                check(held <= s.params.buffer_bytes, f"stream {s.stream_id} holds {held} bytes")
        # Wind everything down the way the Linux driver does.
        for s in sound.device.streams:
            if s.state is PcmState.START:
                _command(sound, Code.PCM_STOP, s.stream_id)
            if s.state in (PcmState.PREPARE, PcmState.STOP):
                _command(sound, Code.PCM_RELEASE, s.stream_id)
        _reap(sound, posted)
        check(not posted, f"{len(posted)} buffers never came back after RELEASE: {posted}")
        sound.good_pcm_info()
    finally:
        sound.close()


def _post(
    sound: SoundRig,
    fdp: atheris.FuzzedDataProvider,
    queue: int,
    stream: int,
    posted: dict[tuple[int, int], tuple[int, int]],
) -> None:
    size = fdp.PickValueInList([1024, 4096, 480, 0, 2, 16384, 70000])
    header = struct.pack("<I", stream & 0xFFFFFFFF)
    if fdp.ConsumeIntInRange(0, 7) == 7:
        header = header[: fdp.ConsumeIntInRange(0, 3)]
    status = fdp.PickValueInList([8, 8, 8, 0, 4, 12])
    if queue == Queue.TX:
        readable = [header, bytes(size)] if size else [header]
        writable = [status] if status else []
        data = 0
    else:
        readable = [header]
        writable = [n for n in (size, status) if n]
        data = size
    head = sound.rig.post(queue, [r for r in readable if r], writable)
    if head is not None:
        posted[(queue, head)] = (data, sum(writable))


def _reap(sound: SoundRig, posted: dict[tuple[int, int], tuple[int, int]]) -> None:
    for queue in (Queue.TX, Queue.RX):
        for head, length in sound.rig.used(queue):
            data, writable = posted.pop((queue, head))
            check(length <= writable, f"queue {queue}: {length} used of {writable} writable")
            if queue == Queue.TX:
                check(length in (0, 8) or writable < 8, f"tx buffer used with {length} bytes")
            if length >= 8:  # the status is in the buffer's last 8 bytes
                tail = sound.rig.written(queue, head, writable)[-8:]
                (status, _latency) = struct.unpack("<II", tail)
                check(status in STATUSES, f"pcm status {status:#x}")
            del sound.rig.writable[queue][head]
