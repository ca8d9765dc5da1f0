"""The iio sensor on a generated sysfs tree: channels, units, exponents and
resolutions from `_scale`, readings, and SENSOR_UPDATE from the buffer (a FIFO)."""

from __future__ import annotations

import os
import struct
from decimal import Decimal
from pathlib import Path

import pytest
from iio_tree import make_iio_device
from scmi_driver import ScmiDriver, notification_header

from vhost_device_scmi.errors import ConfigError
from vhost_device_scmi.protocol import Protocol, SensorMessage, Status
from vhost_device_scmi.sensors import IioSensor, ScanElement, exponent_and_step

S = Protocol.SENSOR
M = SensorMessage


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    return make_iio_device(tmp_path)


@pytest.fixture
def iio(connect, tree: tuple[Path, Path]) -> ScmiDriver:  # noqa: ANN001
    device, node = tree
    return connect(
        lambda: [IioSensor(device, "in_accel", dev=node), IioSensor(device, "in_temp", "temp")]
    )


@pytest.mark.parametrize(
    ("scale", "expected"),
    [("0.009806", (-6, 9806)), ("0.1", (-1, 1)), ("1", (0, 1)), ("2500", (2, 25))],
)
def test_exponent_and_step(scale: str, expected: tuple[int, int]) -> None:
    assert exponent_and_step(Decimal(scale)) == expected


def test_scan_element_types() -> None:
    element = ScanElement.parse(0, "be:s12/16>>4")
    assert element.decode(bytes([0xFF, 0xF0])) == -1
    assert ScanElement.parse(1, "le:u8/8>>0").decode(b"\xff") == 255
    with pytest.raises(ValueError, match="not understood"):
        ScanElement.parse(0, "le:s16")


def test_description_from_sysfs(iio: ScmiDriver) -> None:
    status, data = iio.call(S, M.DESCRIPTION_GET, 0)
    assert status == 0 and struct.unpack_from("<HH", data) == (2, 0)
    sid, low, high = struct.unpack_from("<III", data, 4)
    assert (sid, data[16:32].rstrip(b"\0")) == (0, b"test-accel")
    assert low & (1 << 30)  # notifications: the buffer node exists
    assert (high & 0xFF, (high >> 11) & 0x1F, (high >> 16) & 0x3F) == (0x59, -6 & 0x1F, 3)
    temp = data[4 + 32 :]
    sid, low, high = struct.unpack_from("<III", temp)
    assert (sid, temp[12:28].rstrip(b"\0"), low & (1 << 30)) == (1, b"temp", 0)
    assert (high & 0xFF, (high >> 11) & 0x1F, high & (1 << 8)) == (0x2, -1 & 0x1F, 0)
    (resolution,) = struct.unpack_from("<I", temp, 32)
    assert (resolution & 0x7FFFFFF, resolution >> 27) == (1, -1 & 0x1F)


def test_axis_description_from_sysfs(iio: ScmiDriver) -> None:
    status, data = iio.call(S, M.AXIS_DESCRIPTION_GET, 0, 0, room=256)
    assert status == 0 and struct.unpack_from("<I", data) == (3,)
    names = [data[4 + 48 * i + 12 : 4 + 48 * i + 28].rstrip(b"\0") for i in range(3)]
    assert names == [b"x", b"y", b"z"]
    (resolution,) = struct.unpack_from("<I", data, 4 + 28)
    assert (resolution & 0x7FFFFFF, resolution >> 27) == (9806, -6 & 0x1F)
    assert iio.call(S, M.AXIS_DESCRIPTION_GET, 1, 0) == (Status.NOT_SUPPORTED, b"")


def test_readings_in_scmi_units(iio: ScmiDriver, tree: tuple[Path, Path]) -> None:
    status, data = iio.call(S, M.READING_GET, 0, 0)
    assert status == 0
    assert struct.unpack("<qQqQqQ", data)[::2] == (980600, -1961200, 9806000)  # µm/s²
    # (250 - 50) · 100 m°C = 20.0 °C, in tenths
    assert iio.call(S, M.READING_GET, 1, 0) == (0, struct.pack("<qQ", 200, 0))
    (tree[0] / "in_temp_raw").write_text("260\n")
    assert iio.call(S, M.READING_GET, 1, 0) == (0, struct.pack("<qQ", 210, 0))


def test_a_failing_read_is_a_hardware_error(iio: ScmiDriver, tree: tuple[Path, Path]) -> None:
    (tree[0] / "in_temp_raw").unlink()
    assert iio.call(S, M.READING_GET, 1, 0) == (Status.HARDWARE_ERROR, b"")
    (tree[0] / "in_temp_raw").write_text("garbage\n")
    assert iio.call(S, M.READING_GET, 1, 0) == (Status.HARDWARE_ERROR, b"")
    assert iio.call(S, M.READING_GET, 0, 0)[0] == 0


def test_a_channel_without_a_buffer_does_not_notify(iio: ScmiDriver) -> None:
    assert iio.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 1, 1) == (Status.NOT_SUPPORTED, b"")


def test_updates_from_the_buffer(iio: ScmiDriver, tree: tuple[Path, Path]) -> None:
    device, node = tree
    buffers = dict(iio.post_event_buffers(2))
    assert iio.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 0, 1) == (Status.SUCCESS, b"")
    assert (device / "buffer/enable").read_text().strip() == "1"
    for axis in "xyz":
        assert (device / f"scan_elements/in_accel_{axis}_en").read_text() == "1"
    assert (device / "scan_elements/in_timestamp_en").read_text() == "0"
    writer = os.open(node, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, struct.pack("<3h", 1, 2, 3) + struct.pack("<3h", -1, 0, 1)[:4])
        (first,) = iio.notifications(buffers, 1)
        os.write(writer, struct.pack("<3h", -1, 0, 1)[4:])  # a scan split over writes
        used = iio.eventq.wait_used(1)
        second = iio.ram.memory.read(buffers[used[0][0]], used[0][1])
    finally:
        os.close(writer)
    for message, raws in ((first, (1, 2, 3)), (second, (-1, 0, 1))):
        header = notification_header(message)
        assert (header.protocol_id, header.message_id) == (S, 0x1)
        assert struct.unpack_from("<II", message, 4) == (0, 0)
        values = struct.unpack_from("<qQqQqQ", message, 12)[::2]
        assert values == tuple(9806 * r for r in raws)
    assert iio.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 0, 0) == (Status.SUCCESS, b"")
    assert (device / "buffer/enable").read_text().strip() == "0"


def test_no_buffer_node_means_no_notifications(connect, tmp_path: Path) -> None:  # noqa: ANN001
    device, _ = make_iio_device(tmp_path, fifo=False)
    iio = connect(lambda: [IioSensor(device, "in_accel")])
    status, data = iio.call(S, M.DESCRIPTION_GET, 0)
    assert status == 0 and not struct.unpack_from("<I", data, 8)[0] & (1 << 30)
    assert iio.call(S, M.CONTINUOUS_UPDATE_NOTIFY, 0, 1) == (Status.NOT_SUPPORTED, b"")


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("in_bogus", "not an IIO channel type"),
        ("accel", "not an IIO channel type"),
        ("in_magn", "has no _raw value"),
    ],
)
def test_bad_channels(tree: tuple[Path, Path], channel: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IioSensor(tree[0], channel)


def test_a_bad_scale_is_a_config_error(tree: tuple[Path, Path]) -> None:
    (tree[0] / "in_temp_scale").write_text("-1\n")
    with pytest.raises(ConfigError, match="not positive"):
        IioSensor(tree[0], "in_temp")


def test_a_long_device_name_is_cut_to_fifteen_bytes(tree: tuple[Path, Path]) -> None:
    (tree[0] / "name").write_text("a-very-long-device-name\n")
    assert IioSensor(tree[0], "in_temp").name == "a-very-long-dev"
