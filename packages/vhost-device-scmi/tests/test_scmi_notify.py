"""SENSOR_UPDATE notifications on the eventq: only when enabled, only for an enabled
sensor, never lost for want of a buffer (up to a bound), stopped with the ring."""

from __future__ import annotations

import struct
import time

from scmi_driver import ScmiDriver, none_used, notification_header

from vhost_device_scmi.protocol import Protocol, SensorMessage, Status

S = Protocol.SENSOR
NOTIFY = SensorMessage.CONTINUOUS_UPDATE_NOTIFY


def _check_update(message: bytes, sensor_id: int) -> None:
    header = notification_header(message)
    assert (header.protocol_id, header.message_id) == (S, 0x1)  # SENSOR_UPDATE
    agent, sid = struct.unpack_from("<II", message, 4)
    assert (agent, sid) == (0, sensor_id)
    assert len(message) == 12 + 3 * 16
    assert struct.unpack_from("<q", message, 12 + 32)[0] == 9806  # z


def test_no_notification_until_enabled(scmi: ScmiDriver) -> None:
    scmi.post_event_buffers(2)
    assert none_used(scmi.eventq)


def test_enabled_notifications_arrive_and_stop_when_disabled(scmi: ScmiDriver) -> None:
    buffers = dict(scmi.post_event_buffers(4))
    assert scmi.call(S, NOTIFY, 1, 1) == (Status.SUCCESS, b"")
    for message in scmi.notifications(buffers, 2):
        _check_update(message, 1)
    assert scmi.call(S, NOTIFY, 1, 0) == (Status.SUCCESS, b"")
    time.sleep(0.1)
    scmi.eventq.driver.get_used()  # one may have been on its way
    assert none_used(scmi.eventq)


def test_enabling_twice_is_one_stream(scmi: ScmiDriver) -> None:
    assert scmi.call(S, NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    assert scmi.call(S, NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    time.sleep(0.5)  # about 10 periods: one timer gives about 10 updates, two 20
    buffers = dict(scmi.post_event_buffers(30))
    time.sleep(0.1)
    used = scmi.eventq.driver.get_used()
    assert 3 <= len(used) <= 15
    for head, length in used:
        _check_update(scmi.ram.memory.read(buffers[head], length), 0)


def test_a_disabled_sensor_sends_nothing(scmi: ScmiDriver) -> None:
    scmi.post_event_buffers(2)
    assert scmi.call(S, SensorMessage.CONFIG_SET, 0, 0) == (Status.SUCCESS, b"")
    assert scmi.call(S, NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    assert none_used(scmi.eventq)
    assert scmi.call(S, SensorMessage.CONFIG_SET, 0, 1) == (Status.SUCCESS, b"")
    assert len(scmi.eventq.wait_used(1)) >= 1


def test_updates_wait_for_a_buffer(scmi: ScmiDriver) -> None:
    assert scmi.call(S, NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    time.sleep(0.2)
    buffers = dict(scmi.post_event_buffers(1))
    (message,) = scmi.notifications(buffers, 1)
    _check_update(message, 0)


def test_a_too_small_event_buffer_is_returned_empty(scmi: ScmiDriver) -> None:
    ((head, _),) = scmi.post_event_buffers(1, size=16)
    assert scmi.call(S, NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    assert scmi.eventq.wait_used(1) == [(head, 0)]
