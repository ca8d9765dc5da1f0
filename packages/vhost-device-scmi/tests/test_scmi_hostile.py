"""Hostile descriptors and messages, each its own case: the buffer fails (an error
status where there is a header to answer, nothing where there is not) and the device
goes on serving the next command."""

from __future__ import annotations

import struct

from scmi_driver import ScmiDriver

from vhost_device_scmi.protocol import Header, Protocol, SensorMessage, Status

VIRTQ_DESC_F_NEXT = 1
VERSION = Header(0, Protocol.BASE).pack()


def _still_serves(scmi: ScmiDriver) -> None:
    assert scmi.call(Protocol.BASE, 0) == (0, struct.pack("<I", 0x20000))


def _used(scmi: ScmiDriver, chain: list[tuple[int, int, bool]], queue: int = 0) -> int:
    q = scmi.cmdq if queue == 0 else scmi.eventq
    head = q.driver.add(chain)
    q.publish()
    ((used_head, length),) = q.wait_used(1)
    assert used_head == head
    return length


def test_command_without_a_reply_buffer(scmi: ScmiDriver) -> None:
    src = scmi.ram.alloc(4)
    scmi.ram.memory.write(src, VERSION)
    assert _used(scmi, [(src, 4, False)]) == 0
    _still_serves(scmi)


def test_command_shorter_than_a_header(scmi: ScmiDriver) -> None:
    assert scmi.raw(VERSION[:3]) == b""
    _still_serves(scmi)


def test_command_without_readable_bytes(scmi: ScmiDriver) -> None:
    assert scmi.raw(b"") == b""
    _still_serves(scmi)


def test_a_notification_sent_as_a_command(scmi: ScmiDriver) -> None:
    header = Header(0, Protocol.BASE, 5, type=3).pack()
    assert scmi.raw(header) == header + struct.pack("<i", Status.PROTOCOL_ERROR)
    _still_serves(scmi)


def test_reply_buffer_too_small_gets_what_fits(scmi: ScmiDriver) -> None:
    assert scmi.raw(VERSION, room=6) == VERSION + b"\0\0"
    _still_serves(scmi)


def test_reading_reply_buffer_too_small(scmi: ScmiDriver) -> None:
    header = Header(SensorMessage.READING_GET, Protocol.SENSOR).pack()
    assert scmi.raw(header + bytes(8), room=8) == header + bytes(4)
    _still_serves(scmi)


def test_command_split_over_descriptors_is_served(scmi: ScmiDriver) -> None:
    a, b, out = scmi.ram.alloc(2), scmi.ram.alloc(2), scmi.ram.alloc(12)
    scmi.ram.memory.write(a, VERSION[:2])
    scmi.ram.memory.write(b, VERSION[2:])
    assert _used(scmi, [(a, 2, False), (b, 2, False), (out, 12, True)]) == 12
    assert scmi.ram.memory.read(out, 12) == VERSION + struct.pack("<iI", 0, 0x20000)


def test_command_outside_guest_memory(scmi: ScmiDriver) -> None:
    out = scmi.ram.alloc(12)
    assert _used(scmi, [(1 << 44, 4, False), (out, 12, True)]) == 0
    _still_serves(scmi)


def test_reply_outside_guest_memory(scmi: ScmiDriver) -> None:
    src = scmi.ram.alloc(4)
    scmi.ram.memory.write(src, VERSION)
    assert _used(scmi, [(src, 4, False), (1 << 44, 12, True)]) == 0
    _still_serves(scmi)


def test_descriptor_loop(scmi: ScmiDriver) -> None:
    q = scmi.cmdq
    src = scmi.ram.alloc(4)
    scmi.ram.memory.write(src, VERSION)
    head = q.driver.add([(src, 4, False), (scmi.ram.alloc(12), 12, True)])
    q.driver.write_raw_descriptor((head + 1) % q.size, src, 4, VIRTQ_DESC_F_NEXT, head)
    q.publish()
    assert q.wait_used(1) == [(head, 0)]
    _still_serves(scmi)


def test_head_index_beyond_the_eventq_ring(scmi: ScmiDriver) -> None:
    # the core marks that ring broken (the spec's NEEDS_RESET); the cmdq goes on
    q = scmi.eventq
    q.driver.push_avail(q.size + 5)
    q.publish()
    _still_serves(scmi)


def test_event_buffer_with_readable_bytes_is_refused(scmi: ScmiDriver) -> None:
    src, out = scmi.ram.alloc(4), scmi.ram.alloc(64)
    assert _used(scmi, [(src, 4, False), (out, 64, True)], queue=1) == 0
    _still_serves(scmi)


def test_event_buffer_without_writable_bytes_is_refused(scmi: ScmiDriver) -> None:
    assert _used(scmi, [(scmi.ram.alloc(4), 4, False)], queue=1) == 0
    _still_serves(scmi)


def test_event_buffer_outside_guest_memory(scmi: ScmiDriver) -> None:
    assert _used(scmi, [(1 << 44, 64, True)], queue=1) == 0
    _still_serves(scmi)


def test_huge_sensor_and_axis_ids(scmi: ScmiDriver) -> None:
    for message in (SensorMessage.READING_GET, SensorMessage.AXIS_DESCRIPTION_GET):
        assert scmi.call(Protocol.SENSOR, message, 0xFFFFFFFF, 0) == (Status.NOT_FOUND, b"")
    status, _ = scmi.call(Protocol.SENSOR, SensorMessage.AXIS_DESCRIPTION_GET, 0, 0xFFFFFFFF)
    assert status == Status.INVALID_PARAMETERS
    _still_serves(scmi)
