"""vhost-device-scmi's cmdq and eventq on two fake accelerometers: fuzzed commands of
the base and sensor protocols (every message id, header type and token, parameters
of the right count with fuzzed values or of the wrong length, any reply room),
eventq buffers of any shape, sensor update timers fired in any order, and the eventq
stopped.

Invariants:
- nothing but VhostUserError escapes `handle_queue`, `queue_stopped` or the timers;
- every command is completed once, within its reply buffer: 0 bytes without a header,
  else the command's own header echoed and a status the spec defines; SUCCESS only for
  a command of a supported protocol and message; lists (sensors, axes, protocols) say
  how many they return and how many remain, and the two add up;
- CONFIG_GET returns what CONFIG_SET last stored, per sensor (a model);
- every eventq buffer is completed at most once, empty when it has readable bytes or
  no room; a notification is SENSOR_UPDATE of the sensor protocol for a sensor whose
  updates were turned on;
- once updates are off or the eventq stopped, no sensor timer is left armed;
- afterwards BASE VERSION is answered SUCCESS.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check

from vhost_device_scmi.device import ScmiBackend
from vhost_device_scmi.protocol import BASE_VERSION, Header, Protocol, Status
from vhost_device_scmi.sensors import FakeAccelerometer

CMDQ, EVENTQ = 0, 1
SENSORS = 2
STATUSES = {int(s) for s in Status}
SUPPORTED = {0x10: set(range(7)), 0x15: {0, 1, 2, 3, 6, 7, 9, 10, 11}}
#: message id -> the number of u32 parameters it takes (sensor protocol)
SENSOR_ARGS = {0: 0, 1: 0, 2: 1, 3: 1, 6: 2, 7: 2, 9: 1, 10: 2, 11: 2}
BASE_ARGS = {0: 0, 1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 6: 1}
VALUES = [0, 1, 2, 3, 0xFFFFFFFF, 0x10, 0x15, 0xFFFF0001, 0x200, 0x2]


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    rig = Rig([64, 64])
    backend = ScmiBackend(lambda: [FakeAccelerometer(f"acc{i}", 0.05) for i in range(SENSORS)])
    backend.attach([rig.worker], rig.vrings)
    config = [1] * SENSORS  # enabled, as the platform starts
    notify = [False] * SENSORS
    ever = [False] * SENSORS  # updates were on at some time (pending ones may follow)
    events: dict[int, int] = {}  # eventq head -> writable size
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 20)):
            action = fdp.ConsumeIntInRange(0, 7)
            if action <= 3:
                _command(fdp, rig, backend, config, notify)
            elif action <= 5:
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    size = fdp.PickValueInList([64, 64, 8, 0])
                    readable = [b"x"] if fdp.ConsumeIntInRange(0, 7) == 0 else []
                    head = rig.post(EVENTQ, readable, [size] if size else [])
                    if head is not None:
                        events[head] = size if not readable else -1
                rig.publish(EVENTQ)
                backend.handle_queue(rig.vrings[EVENTQ])
            elif action == 6:
                rig.worker.step(timers=fdp.ConsumeIntInRange(1, 4))
            else:
                backend.queue_stopped(rig.vrings[EVENTQ])
                notify = [False] * SENSORS
                events.clear()  # they died with the ring
                rig.used(EVENTQ)
            ever = [a or b for a, b in zip(ever, notify, strict=True)]
            _reap_events(rig, events, ever)
            if not any(notify):
                check(rig.worker.timers_armed == 0, "a sensor timer is armed with updates off")
        rig.reset_scratch()
        reply = _ask(rig, backend, Header(0, Protocol.BASE, 5).pack(), 64)
        want = Header(0, Protocol.BASE, 5).pack() + struct.pack("<iI", 0, BASE_VERSION)
        check(reply == want, f"BASE VERSION answered {reply.hex()}")
    finally:
        backend.close()
        rig.close()


def _command(
    fdp: atheris.FuzzedDataProvider,
    rig: Rig,
    backend: ScmiBackend,
    config: list[int],
    notify: list[bool],
) -> None:
    protocol = fdp.PickValueInList([0x10, 0x15, 0x15, 0x11, 0])
    message = fdp.ConsumeIntInRange(0, 12)
    kind = fdp.PickValueInList([0, 0, 0, 0, 1, 2, 3])
    token = fdp.ConsumeIntInRange(0, 0x3FF)
    header = Header(message, protocol, token, kind)
    count = (SENSOR_ARGS if protocol == 0x15 else BASE_ARGS).get(message, 0)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        count = fdp.ConsumeIntInRange(0, 3)
    args = [fdp.PickValueInList(VALUES) for _ in range(count)]
    request = header.pack() + struct.pack(f"<{count}I", *args)
    if fdp.ConsumeIntInRange(0, 15) == 0:
        request = request[: fdp.ConsumeIntInRange(0, len(request))]
    room = fdp.PickValueInList([128, 128, 8, 12, 64, 7, 0, 200, 300])
    if not request and not room:
        return  # no chain without a descriptor
    if room < 8 and protocol == 0x15 and message in (10, 11):
        room = 8  # the model follows state changes by their status
    reply = _ask(rig, backend, request, room)
    check(len(reply) <= room, f"a reply of {len(reply)} bytes in {room}")
    if len(request) < 4:
        check(reply == b"", f"a reply {reply.hex()} to no header")
        return
    echoed = Header.unpack(request).pack()
    check(reply[:4] == echoed[: len(reply)], f"header {reply[:4].hex()}, sent {echoed.hex()}")
    if len(reply) < 8:
        return
    (status,) = struct.unpack_from("<i", reply, 4)
    check(status in STATUSES, f"status {status}")
    ok = status == Status.SUCCESS
    if ok:
        check(kind == 0 and message in SUPPORTED.get(protocol, ()), f"SUCCESS for {header}")
    body = reply[8:]
    params = request[4:]
    if not (ok and protocol == 0x15):
        return
    if message == 3 and len(body) >= 4:  # DESCRIPTION_GET
        returned, remaining = struct.unpack_from("<HH", body)
        (first,) = struct.unpack("<I", params)
        check(returned + remaining == SENSORS - first, f"{returned} + {remaining} sensors")
    elif message == 7 and len(body) >= 4:  # AXIS_DESCRIPTION_GET
        (word,) = struct.unpack_from("<I", body)
        _, first = struct.unpack("<II", params)
        check((word & 0xFFF) + (word >> 26) == 3 - first, f"axes {word:#x} from {first}")
    elif message == 9 and len(body) >= 4:  # CONFIG_GET
        (sensor,) = struct.unpack("<I", params)
        check(struct.unpack_from("<I", body)[0] == config[sensor], f"sensor {sensor} config")
    elif message == 10:  # CONFIG_SET
        sensor, value = struct.unpack("<II", params)
        config[sensor] = value
    elif message == 11:  # CONTINUOUS_UPDATE_NOTIFY
        sensor, control = struct.unpack("<II", params)
        notify[sensor] = bool(control)


def _ask(rig: Rig, backend: ScmiBackend, request: bytes, room: int) -> bytes:
    head = rig.post(CMDQ, [request] if request else [], [room] if room else [])
    if head is None:
        rig.reset_scratch()
        head = rig.post(CMDQ, [request] if request else [], [room] if room else [])
    check(head is not None, "no room for a command")
    rig.publish(CMDQ)
    backend.handle_queue(rig.vrings[CMDQ])
    used = rig.used(CMDQ)
    check([h for h, _ in used] == [head], f"commands completed {used}, posted {head}")
    reply = rig.written(CMDQ, head, used[0][1])  # type: ignore[arg-type]
    del rig.writable[CMDQ][head]  # type: ignore[arg-type]
    return reply


def _reap_events(rig: Rig, events: dict[int, int], ever: list[bool]) -> None:
    for head, length in rig.used(EVENTQ):
        check(head in events, f"eventq buffer {head} completed twice")
        size = events.pop(head)
        if size <= 0 or length == 0:
            check(length == 0, f"eventq buffer {head} of {size} filled")
            continue
        message = rig.written(EVENTQ, head, length)
        check(length <= size and length >= 12, f"a notification of {length} bytes")
        header = Header.unpack(message)
        check((header.type, header.protocol_id, header.message_id) == (3, 0x15, 1), f"{header}")
        _agent, sensor = struct.unpack_from("<II", message, 4)
        check(sensor < SENSORS and ever[sensor], f"an update of sensor {sensor}, never asked")
        del rig.writable[EVENTQ][head]
