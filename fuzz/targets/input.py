"""vhost-device-input's eventq, statusq and config space on the sim keyboard: fuzzed
host events (frames, SYN_DROPPED from the host, frames longer than the backlog, events
without a SYN), eventq buffers of any size posted in any rhythm, statusq events of any
type, config writes at any offset, and the queue stopped with buffers held.

Invariants:
- nothing but VhostUserError escapes `handle_queue`, `set_config`, `queue_stopped` or
  the worker's device callback;
- every eventq buffer is completed once: 8 bytes with one event, or 0 when it cannot
  hold one or the queue stops;
- the guest sees whole frames only: cut at each SYN_REPORT, its events are the host's
  frames in order, and where frames were lost (the backlog overflowed, the host
  dropped) a lone SYN_DROPPED comes first;
- statusq LED and sound events (only those, whole) reach the device, in order;
- the config space is always 136 bytes, select and subsel what was written;
- afterwards, given buffers, a new key press frame reaches the guest.
"""

from __future__ import annotations

import os
import struct
import tempfile

import atheris
from evdev import ecodes as e
from harness import Rig, check

from vhost_device_input.device import InputBackend
from vhost_device_input.host import SimDevice
from vhost_device_input.protocol import CONFIG_SIZE, EVENTQ
from vhost_user_core.errors import VhostUserError

STATUSQ = 1
QUEUE = 64
EVENT = struct.Struct("<HHi")
SYN = (e.EV_SYN, e.SYN_REPORT, 0)
DROPPED = (e.EV_SYN, e.SYN_DROPPED, 0)
_dir = tempfile.mkdtemp(prefix="fuzz-input-")
SIM = SimDevice("keyboard", os.path.join(_dir, "kbd.events"))
EVENTS = [
    (e.EV_KEY, e.KEY_A, 1),
    (e.EV_KEY, e.KEY_A, 0),
    (e.EV_REL, e.REL_X, -5),
    (e.EV_MSC, e.MSC_SCAN, 0x70004),
    (e.EV_SYN, e.SYN_REPORT, 0),
    (e.EV_SYN, e.SYN_DROPPED, 0),
    (e.EV_SYN, e.SYN_CONFIG, 7),
    (0xFFFF, 0xFFFF, -(2**31)),
]
STATUS = [(e.EV_LED, e.LED_CAPSL, 1), (e.EV_SND, e.SND_BELL, 1), (e.EV_KEY, 1, 1), (0, 0, 0)]


class Model:
    def __init__(self) -> None:
        self.frames: list[list[tuple[int, int, int]]] = []  # whole frames, as cut
        self.partial: list[tuple[int, int, int]] = []
        self.delivered: list[tuple[int, int, int]] = []  # in used-ring order
        self.eventq: dict[int, int] = {}  # head -> writable size
        self.status_sent: list[tuple[int, int, int]] = []

    def host(self, events: list[tuple[int, int, int]]) -> None:
        for event in events:
            if event == DROPPED:
                self.partial = []
            elif event == SYN:
                self.frames.append([*self.partial, SYN])
                self.partial = []
            else:
                self.partial.append(event)

    def check_delivered(self) -> None:
        """Cut the guest's events at SYN_REPORT; match each frame, in order."""
        frames, frame = [], []
        for event in self.delivered:
            frame.append(event)
            if event in (SYN, DROPPED):
                frames.append(frame)
                frame = []
        check(not frame, f"half a frame reached the guest: {frame}")
        # Between two SYN_DROPPEDs the frames are a run of consecutive host frames; the
        # runs come in order, and the first starts at the first frame unless a
        # SYN_DROPPED comes before it. Placing each run as early as it fits is enough.
        runs: list[list[list[tuple[int, int, int]]]] = [[]]
        for got in frames:
            if got == [DROPPED]:
                runs.append([])
            else:
                runs[-1].append(got)
        at = 0
        for i, run in enumerate(runs):
            if not run:
                continue
            starts = [0] if i == 0 else range(at, len(self.frames) - len(run) + 1)
            start = next((s for s in starts if self.frames[s : s + len(run)] == run), None)
            check(start is not None, f"frames {run} are no run of host frames after #{at}")
            assert start is not None
            at = start + len(run)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    SIM.read()  # what the previous input left
    SIM.written.clear()
    rig = Rig([QUEUE, QUEUE])
    backend = InputBackend(SIM, backlog=fdp.PickValueInList([2, 4, 8, 16, 40]))
    backend.attach([rig.worker], rig.vrings)
    model = Model()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            action = fdp.ConsumeIntInRange(0, 9)
            if action <= 3:
                events = [fdp.PickValueInList(EVENTS) for _ in range(fdp.ConsumeIntInRange(1, 24))]
                SIM.inject(events)
                model.host(events)
            elif action <= 6:
                for _ in range(fdp.ConsumeIntInRange(1, 16)):
                    size = fdp.PickValueInList([8, 8, 8, 16, 4, 0])
                    head = rig.post(EVENTQ, [], [size] if size else [])
                    if head is not None:
                        check(head not in model.eventq, f"eventq head {head} reused")
                        model.eventq[head] = size
                rig.publish(EVENTQ)
                backend.handle_queue(rig.vrings[EVENTQ])
            elif action == 7:
                _status(fdp, rig, backend, model)
            elif action == 8:
                _config(fdp, backend)
            else:
                backend.queue_stopped(rig.vrings[EVENTQ])
            rig.worker.step()
            _reap(rig, model)
        # A key press, given buffers for whatever waits before it: first what waits,
        # then a SYN_REPORT (ends a partial or discarded frame), then the press.
        _drain(rig, backend, model)
        for events in ([SYN], [(e.EV_KEY, e.KEY_Q, 1), SYN]):
            SIM.inject(events)
            model.host(events)
            _drain(rig, backend, model)
        check(model.delivered[-2:] == [(e.EV_KEY, e.KEY_Q, 1), SYN], "the key press was lost")
        model.check_delivered()
        backend.queue_stopped(rig.vrings[EVENTQ])
        _reap(rig, model)
        check(not model.eventq, f"eventq buffers still held: {sorted(model.eventq)}")
    finally:
        backend.close()
        rig.close()


def _drain(rig: Rig, backend: InputBackend, model: Model) -> None:
    """Post buffers until the ring is full of waiting ones: a waiting frame (at most the
    backlog, 40 events, in a 64-entry ring) would have had its buffers."""
    for _ in range(200):
        rig.worker.step()
        for _ in range(min(16, rig.queues[EVENTQ].driver.free_descriptors)):
            head = rig.post(EVENTQ, [], [8])
            check(head is not None, "no scratch memory left for eventq buffers")
            model.eventq[head] = 8  # type: ignore[index]
        rig.publish(EVENTQ)
        backend.handle_queue(rig.vrings[EVENTQ])
        delivered = len(model.delivered)
        _reap(rig, model)
        if not rig.queues[EVENTQ].driver.free_descriptors and len(model.delivered) == delivered:
            return
    check(False, "frames still wait after 200 rounds of buffers")


def _status(fdp: atheris.FuzzedDataProvider, rig: Rig, backend: InputBackend, model: Model) -> None:
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        event = fdp.PickValueInList(STATUS)
        raw = EVENT.pack(*event)
        if fdp.ConsumeIntInRange(0, 7) == 0:
            raw = raw[: fdp.ConsumeIntInRange(0, 7)]
        if rig.post(STATUSQ, [raw] if raw else [], [] if raw else [8]) is None:
            continue
        if len(raw) == 8 and event[0] in (e.EV_LED, e.EV_SND):
            model.status_sent.append(event)
    rig.publish(STATUSQ)
    backend.handle_queue(rig.vrings[STATUSQ])
    for _head, length in rig.used(STATUSQ):
        check(length == 0, f"statusq buffer used {length}")
    check(SIM.written == model.status_sent, f"status {SIM.written} != {model.status_sent}")


def _config(fdp: atheris.FuzzedDataProvider, backend: InputBackend) -> None:
    offset = fdp.PickValueInList([0, 1, 2, 0, 135, 136, -1])
    data = fdp.ConsumeBytes(fdp.PickValueInList([1, 2, 136, 0, 3]))
    before = (backend.select, backend.subsel)
    try:
        backend.set_config(offset, data)
    except VhostUserError:
        check((backend.select, backend.subsel) == before, "a refused write changed the config")
    else:
        want = list(before)
        for i, byte in enumerate(data):
            if offset + i < 2:
                want[offset + i] = byte
        check([backend.select, backend.subsel] == want, "select/subsel not what was written")
    space = backend.config_space()
    check(len(space) == CONFIG_SIZE, f"config space of {len(space)} bytes")
    check(space[:2] == bytes((backend.select, backend.subsel)), "config space's select/subsel")


def _reap(rig: Rig, model: Model) -> None:
    for head, length in rig.used(EVENTQ):
        check(head in model.eventq, f"eventq buffer {head} completed twice")
        size = model.eventq.pop(head)
        if length:
            check(length == 8 and size >= 8, f"eventq buffer {head}: {length} of {size}")
            model.delivered.append(EVENT.unpack(rig.written(EVENTQ, head, 8)))
        del rig.writable[EVENTQ][head]
