"""vhost-device-gpio's requestq and eventq on a mock chip: fuzzed requests (every type,
line and value, wrong sizes, any response room), eventq buffers (any line, malformed,
a second one for a line), and the chip's input levels driven by `--mock-control`
command lines (`mockctl.execute`, the protocol apart from its socket) between them.

Invariants:
- nothing but VhostUserError escapes `handle_queue`, `queue_stopped` or the worker's
  edge callbacks;
- every request is answered once with a status OK or ERR, within its buffer; the
  answers follow a model of the spec and the mock chip: directions, output values
  read back, driven input levels, IRQ types (NONE before another type, only on
  inputs, and a line with one stays an input);
- every eventq buffer is completed at most once, with VALID or INVALID: INVALID at once
  when malformed, for a line without IRQ type or one that already holds a buffer, and
  when its line's type goes back to NONE or the queue stops; VALID by the model's rule
  (an edge of the line's type, one latched while no buffer waited, or a level type's
  level); none is left held after the queue stops;
- a control command line is answered `OK` or `ERR <why>`; a well-formed SET is OK;
- afterwards GET_VALUE of line 0 is answered with its level.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check

from vhost_device_gpio.device import GpioBackend
from vhost_device_gpio.host import MockChip
from vhost_device_gpio.mockctl import execute
from vhost_device_gpio.protocol import EVENTQ, REQUESTQ, Direction, IrqType, Msg

LINES = 4
NAMES = b"".join(b"gpio%d\0" % i for i in range(LINES))
OK, ERR = 0, 1
INVALID, VALID = 0, 1
TYPES = [int(t) for t in IrqType]
WORDS = ["SET", "set", "0", "1", "2", "3", "4", "-1", "00", "x", " ", "\t", "\xe9", "SET 0"]
WORDS += ["\u00b2", "\u0663", "\uff11"]  # digits to str.isdigit(): superscript, Arabic, wide


class Model:
    def __init__(self) -> None:
        self.direction = [Direction.IN] * LINES
        self.output = [0] * LINES
        self.input = [0] * LINES
        self.type = [IrqType.NONE] * LINES
        self.held: list[int | None] = [None] * LINES  # eventq head waiting per line
        self.latched = [False] * LINES
        self.edged = [False] * LINES  # an edge queued since the worker last ran
        #: eventq head -> the status it must come back with (None: held, any order)
        self.events: dict[int, int | None] = {}

    def value(self, line: int) -> int:
        return self.output[line] if self.direction[line] is Direction.OUT else self.input[line]

    def complete(self, line: int, status: int) -> None:
        head, self.held[line] = self.held[line], None
        if head is not None:
            self.events[head] = status

    def level_check(self, line: int) -> None:
        want = 1 if self.type[line] is IrqType.LEVEL_HIGH else 0
        if self.type[line].is_level and self.held[line] is not None and self.input[line] == want:
            self.complete(line, VALID)

    def request(self, kind: int, line: int, value: int, size: int, room: int) -> bytes:
        if size != 8:
            return bytes((ERR, 0))
        if kind == Msg.GET_NAMES:
            ok = line == 0 and value == 0 and room >= 1 + len(NAMES)
            return bytes((OK,)) + NAMES if ok else bytes((ERR, 0))
        if line >= LINES:
            return bytes((ERR, 0))
        if kind == Msg.GET_DIRECTION and value == 0:
            return bytes((OK, self.direction[line]))
        if kind == Msg.SET_DIRECTION and value in (0, 1, 2):
            if value != Direction.IN and self.type[line] is not IrqType.NONE:
                return bytes((ERR, 0))
            self.direction[line] = Direction(value)
            return bytes((OK, 0))
        if kind == Msg.GET_VALUE and value == 0:
            return bytes((OK, self.value(line)))
        if kind == Msg.SET_VALUE and value in (0, 1):
            self.output[line] = value
            return bytes((OK, 0))
        if kind == Msg.IRQ_TYPE and value in TYPES:
            new = IrqType(value)
            if new is self.type[line]:
                return bytes((OK, 0))
            if new is not IrqType.NONE and self.type[line] is not IrqType.NONE:
                return bytes((ERR, 0))
            if new is not IrqType.NONE and self.direction[line] is Direction.OUT:
                return bytes((ERR, 0))
            if new is not IrqType.NONE and self.direction[line] is Direction.NONE:
                self.direction[line] = Direction.IN
            self.type[line], self.latched[line], self.edged[line] = new, False, False
            if new is IrqType.NONE:
                self.complete(line, INVALID)
            self.level_check(line)
            return bytes((OK, 0))
        return bytes((ERR, 0))

    def post_event(self, head: int, line: int | None) -> None:
        if line is None or line >= LINES:
            self.events[head] = INVALID
            return
        if self.type[line] is IrqType.NONE or self.held[line] is not None:
            self.events[head] = INVALID
            return
        self.held[line] = head
        self.events[head] = None
        if self.latched[line]:
            self.latched[line] = False
            self.complete(line, VALID)
        else:
            self.level_check(line)

    def drive(self, line: int, level: int) -> None:
        old, self.input[line] = self.input[line], level
        kind = self.type[line]
        if old != level and kind is not IrqType.NONE:
            if kind.is_level or kind.fires_on(level > old):
                self.edged[line] = True

    def worker_ran(self) -> None:
        for line in range(LINES):
            if not self.edged[line]:
                continue
            self.edged[line] = False
            if self.type[line].is_level:
                self.level_check(line)
            elif self.held[line] is None:
                self.latched[line] = True
            else:
                self.complete(line, VALID)

    def stop(self) -> None:
        for line in range(LINES):
            self.complete(line, INVALID)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rig = Rig([256, 256])
    chip = MockChip(LINES)
    backend = GpioBackend(chip)
    backend.attach([rig.worker], rig.vrings)
    model = Model()
    answers: dict[int, tuple[bytes, int]] = {}  # requestq head -> (answer, room)
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 24)):
            action = fdp.ConsumeIntInRange(0, 7)
            if action <= 2:
                _request(fdp, rig, model, answers)
                rig.publish(REQUESTQ)
                backend.handle_queue(rig.vrings[REQUESTQ])
            elif action <= 4:
                _event(fdp, rig, model)
                rig.publish(EVENTQ)
                backend.handle_queue(rig.vrings[EVENTQ])
            elif action <= 6:
                _command(fdp, chip, model)
            else:
                backend.queue_stopped(rig.vrings[EVENTQ])
                model.stop()
            if fdp.ConsumeBool():
                rig.worker.step()
                model.worker_ran()
            _reap(rig, model, answers)
        backend.queue_stopped(rig.vrings[EVENTQ])
        model.stop()
        rig.worker.step()
        model.worker_ran()
        _reap(rig, model, answers)
        check(not answers, f"requests never answered: {sorted(answers)}")
        check(not model.events, f"eventq buffers held after the queue stopped: {model.events}")
        rig.reset_scratch()
        answer = _ask(rig, backend, struct.pack("<HHI", Msg.GET_VALUE, 0, 0))
        check(answer == bytes((OK, model.value(0))), f"GET_VALUE 0 answered {answer!r}")
    finally:
        backend.close()
        chip.close()
        rig.close()


def _request(
    fdp: atheris.FuzzedDataProvider, rig: Rig, model: Model, answers: dict[int, tuple[bytes, int]]
) -> None:
    kind = fdp.ConsumeIntInRange(0, 8)
    line = fdp.PickValueInList([0, 1, 2, 3, LINES, 0xFFFF])
    value = fdp.PickValueInList([0, 1, 2, 3, 4, 8, 5, 0xFFFFFFFF])
    request = struct.pack("<HHI", kind, line, value)
    if fdp.ConsumeIntInRange(0, 15) == 0:
        request = request[: fdp.ConsumeIntInRange(0, 7)] or fdp.ConsumeBytes(12)
    room = fdp.PickValueInList([2, 2, 1, 0, 3, 64])
    head = rig.post(REQUESTQ, [request] if request else [], [room] if room else [])
    if head is None:
        return
    if len(request) == 8:
        kind, line, value = struct.unpack("<HHI", request)
    answer = model.request(kind, line, value, len(request), room)
    answers[head] = (answer, room)


def _event(fdp: atheris.FuzzedDataProvider, rig: Rig, model: Model) -> None:
    line = fdp.PickValueInList([0, 1, 2, 3, LINES, 0xFFFF])
    request = struct.pack("<H", line)
    if fdp.ConsumeIntInRange(0, 15) == 0:
        request = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4))
    room = fdp.PickValueInList([1, 1, 1, 0, 2])
    head = rig.post(EVENTQ, [request] if request else [], [room] if room else [])
    if head is None:
        return
    check(head not in model.events, f"eventq head {head} reused while outstanding")
    ok = len(request) == 2 and room >= 1
    model.post_event(head, struct.unpack("<H", request)[0] if ok else None)


def _command(fdp: atheris.FuzzedDataProvider, chip: MockChip, model: Model) -> None:
    if fdp.ConsumeIntInRange(0, 3):
        line, level = fdp.ConsumeIntInRange(0, LINES - 1), fdp.ConsumeIntInRange(0, 1)
        command = f"SET 0 {line} {level}\n"
    else:
        command = " ".join(fdp.PickValueInList(WORDS) for _ in range(fdp.ConsumeIntInRange(0, 6)))
    answer = execute([chip], command)
    check(answer == "OK" or answer.startswith("ERR "), f"control answered {answer!r}")
    if command.startswith("SET 0 ") and command.endswith("\n"):
        check(answer == "OK", f"{command!r} answered {answer!r}")
    if answer == "OK":
        words = command.split()
        model.drive(int(words[2]), int(words[3]))


def _reap(rig: Rig, model: Model, answers: dict[int, tuple[bytes, int]]) -> None:
    for head, length in rig.used(REQUESTQ):
        check(head in answers, f"request {head} answered twice")
        answer, room = answers.pop(head)
        want = answer[:room]
        check(length == len(want), f"request {head}: {length} bytes, expected {len(want)}")
        got = rig.written(REQUESTQ, head, length)
        check(got == want, f"request {head}: answered {got!r}, expected {want!r}")
    for head, length in rig.used(EVENTQ):
        check(head in model.events, f"eventq buffer {head} completed twice")
        status = model.events[head]
        check(status is not None, f"eventq buffer {head} completed while it should wait")
        written = rig.written(EVENTQ, head, length)
        check(length <= 1 and written[:1] in (b"", bytes((status,))), f"buffer {head}: {written!r}")
        del model.events[head]


def _ask(rig: Rig, backend: GpioBackend, request: bytes) -> bytes:
    head = rig.post(REQUESTQ, [request], [2])
    check(head is not None, "no room for the good request")
    rig.publish(REQUESTQ)
    backend.handle_queue(rig.vrings[REQUESTQ])
    used = dict(rig.used(REQUESTQ))
    check(head in used, "the good request was not answered")
    return rig.written(REQUESTQ, head, used[head])  # type: ignore[arg-type]
