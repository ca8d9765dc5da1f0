"""vhost-device-sound's control queue: fuzzed requests of every code (queries, PCM
commands through the stream state machine, control elements), split across
descriptors, with fuzzed response room, with and without VIRTIO_SND_F_CTLS.

Invariants:
- nothing but VhostUserError escapes `handle_queue`;
- every request is answered, within its response buffer, with a known status whenever
  there is room for one (upstream leaves unknown codes unanswered);
- a stream's state follows pcm_state's transitions: after each answer it is one of the
  spec's states, and a refused command leaves it unchanged;
- afterwards a driver's first request, PCM_INFO for both streams, is answered OK.
"""

from __future__ import annotations

import struct

import atheris
from harness import check
from sound_rig import SoundRig, fuzzed_request

from vhost_device_sound.pcm_state import TRANSITIONS, PcmState
from vhost_device_sound.protocol import Code, Status


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    sound = SoundRig(controls=fdp.ConsumeBool())
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            request = fuzzed_request(fdp)
            room = fdp.PickValueInList([4, 4, 100, 1024, 0, 3, 600])
            cuts = [
                fdp.ConsumeIntInRange(0, len(request)) for _ in range(fdp.ConsumeIntInRange(0, 3))
            ]
            before = [s.state for s in sound.device.streams]
            sound.rig.reset_scratch()
            answer = sound.control(request, room, cuts)
            after = [s.state for s in sound.device.streams]
            for b, a in zip(before, after, strict=True):
                check(a in PcmState, f"stream state {a!r}")
                if a is not b:
                    code = struct.unpack_from("<I", request)[0] if len(request) >= 4 else None
                    check(code in TRANSITIONS, f"state {b} -> {a} by request {code}")
                    target, allowed = TRANSITIONS[Code(code)]
                    check(a is target and b in allowed, f"{b} -> {a} by {Code(code).name}")
                    ok = answer is not None and answer[:4] == struct.pack("<I", Status.OK)
                    check(ok or room < 4, f"{Code(code).name} changed state but was refused")
            sound.rig.worker.step(timers=fdp.ConsumeIntInRange(0, 2))
        sound.good_pcm_info()
    finally:
        sound.close()
