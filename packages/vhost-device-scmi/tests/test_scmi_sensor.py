"""The sensor management protocol (0x15) on fake accelerometers: every message, its
layouts as Linux's sensors.c reads them, and every error status."""

from __future__ import annotations

import struct

import pytest
from scmi_driver import ScmiDriver

from vhost_device_scmi.protocol import Protocol, SensorMessage, Status

S = Protocol.SENSOR
M = SensorMessage


def test_version(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.VERSION) == (0, struct.pack("<I", 0x30000))


def test_attributes(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.ATTRIBUTES) == (0, struct.pack("<HBBIII", 2, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("message", list(SensorMessage))
def test_message_attributes_of_every_message(scmi: ScmiDriver, message: int) -> None:
    assert scmi.call(S, M.MESSAGE_ATTRIBUTES, message) == (0, bytes(4))


@pytest.mark.parametrize("message", [0x4, 0x5, 0x8, 0xC, 0xD, 0xFF])
def test_messages_upstream_does_not_answer(scmi: ScmiDriver, message: int) -> None:
    # TRIP_POINT_NOTIFY, TRIP_POINT_CONFIG, LIST_UPDATE_INTERVALS, NAME_GET, ...
    assert scmi.call(S, M.MESSAGE_ATTRIBUTES, message) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, message, 0, 0) == (Status.NOT_SUPPORTED, b"")


def _descriptor(sensor_id: int, name: bytes) -> bytes:
    low = 1 << 30 | 1 << 8  # update notifications, extended attributes
    high = 0x59 | (-3 & 0x1F) << 11 | 1 << 8 | 3 << 16  # m/s², 10^-3, 3 axes
    return struct.pack("<III", sensor_id, low, high) + name.ljust(16, b"\0") + bytes(4)


def test_description_get_all(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.DESCRIPTION_GET, 0) == (
        0,
        struct.pack("<HH", 2, 0) + _descriptor(0, b"acc0") + _descriptor(1, b"acc1"),
    )


def test_description_get_from_an_index(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.DESCRIPTION_GET, 1) == (
        0,
        struct.pack("<HH", 1, 0) + _descriptor(1, b"acc1"),
    )


def test_description_get_cut_to_the_reply_buffer(scmi: ScmiDriver) -> None:
    status, data = scmi.call(S, M.DESCRIPTION_GET, 0, room=8 + 4 + 32)
    assert (status, data) == (0, struct.pack("<HH", 1, 1) + _descriptor(0, b"acc0"))


def test_description_get_past_the_end(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.DESCRIPTION_GET, 2) == (Status.INVALID_PARAMETERS, b"")
    assert scmi.call(S, M.DESCRIPTION_GET, 0xFFFFFFFF) == (Status.INVALID_PARAMETERS, b"")


def _axis(axis_id: int, name: bytes) -> bytes:
    high = 0x59 | (-3 & 0x1F) << 11
    resolution = 1 | (-3 & 0x1F) << 27
    return (
        struct.pack("<III", axis_id, 1 << 8, high)
        + name.ljust(16, b"\0")
        + struct.pack("<Iqq", resolution, -(1 << 63), (1 << 63) - 1)
    )


def test_axis_description_get(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 0, 0, room=256) == (
        0,
        struct.pack("<I", 3) + _axis(0, b"x") + _axis(1, b"y") + _axis(2, b"z"),
    )
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 1, 2) == (0, struct.pack("<I", 1) + _axis(2, b"z"))


def test_axis_description_get_cut_says_how_many_remain(scmi: ScmiDriver) -> None:
    # Linux's transport offers 136 bytes: two axes, then it asks from index 2
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 0, 0, room=136) == (
        0,
        struct.pack("<I", 2 | 1 << 26) + _axis(0, b"x") + _axis(1, b"y"),
    )
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 0, 0, room=8 + 4 + 48) == (
        0,
        struct.pack("<I", 1 | 2 << 26) + _axis(0, b"x"),
    )


def test_axis_description_get_errors(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 2, 0) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, M.AXIS_DESCRIPTION_GET, 0, 3) == (Status.INVALID_PARAMETERS, b"")


def test_reading_get_three_axes(scmi: ScmiDriver) -> None:
    status, data = scmi.call(S, M.READING_GET, 0, 0)
    assert status == 0 and len(data) == 3 * 16
    values = struct.unpack("<qQqQqQ", data)
    assert values[2:] == (0, 0, 9806, 0)  # y still, z gravity in mm/s²; no timestamps


def test_reading_get_errors(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.READING_GET, 2, 0) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, M.READING_GET, 0, 1) == (Status.NOT_SUPPORTED, b"")  # async
    assert scmi.call(S, M.READING_GET, 0, 2) == (Status.INVALID_PARAMETERS, b"")


def test_config_get_and_set(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.CONFIG_GET, 0) == (0, struct.pack("<I", 1))  # enabled
    assert scmi.call(S, M.CONFIG_SET, 0, 0) == (0, b"")
    assert scmi.call(S, M.CONFIG_GET, 0) == (0, struct.pack("<I", 0))
    assert scmi.call(S, M.CONFIG_GET, 1) == (0, struct.pack("<I", 1))  # per sensor
    interval = 5 << 16 | (-3 & 0x1F) << 11 | 1
    assert scmi.call(S, M.CONFIG_SET, 0, interval) == (0, b"")
    assert scmi.call(S, M.CONFIG_GET, 0) == (0, struct.pack("<I", interval))


def test_config_errors(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.CONFIG_GET, 2) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, M.CONFIG_SET, 2, 1) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, M.CONFIG_SET, 0, 1 << 1) == (Status.INVALID_PARAMETERS, b"")  # timestamp
    assert scmi.call(S, M.CONFIG_SET, 0, 1 << 5) == (Status.INVALID_PARAMETERS, b"")  # reserved
    assert scmi.call(S, M.CONFIG_GET, 0) == (0, struct.pack("<I", 1))  # unchanged


def test_continuous_update_notify_errors(scmi: ScmiDriver) -> None:
    assert scmi.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 2, 1) == (Status.NOT_FOUND, b"")
    assert scmi.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 0, 2) == (Status.INVALID_PARAMETERS, b"")


@pytest.mark.parametrize(
    ("message", "args"),
    [
        (M.VERSION, (1,)),
        (M.ATTRIBUTES, (1,)),
        (M.DESCRIPTION_GET, ()),
        (M.DESCRIPTION_GET, (0, 0)),
        (M.READING_GET, (0,)),
        (M.READING_GET, (0, 0, 0)),
        (M.AXIS_DESCRIPTION_GET, (0,)),
        (M.CONFIG_GET, ()),
        (M.CONFIG_SET, (0,)),
        (M.CONTINUOUS_UPDATE_NOTIFY, (0,)),
    ],
)
def test_bad_lengths_are_protocol_errors(
    scmi: ScmiDriver, message: int, args: tuple[int, ...]
) -> None:
    assert scmi.call(S, message, *args) == (Status.PROTOCOL_ERROR, b"")


def test_no_sensors(connect) -> None:  # noqa: ANN001
    scmi = connect(list)
    assert scmi.call(S, M.ATTRIBUTES) == (0, bytes(16))
    assert scmi.call(S, M.DESCRIPTION_GET, 0) == (0, bytes(4))
    assert scmi.call(S, M.READING_GET, 0, 0) == (Status.NOT_FOUND, b"")
