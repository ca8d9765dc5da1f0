"""The iio sensor against the real kernel's IIO subsystem: inside a hostkernel guest,
the kernel's own tmp006 driver (an IR thermopile sensor) probes a chip simulated by
i2c-stub, so the sysfs tree the daemon reads is the kernel's, not a generated one.
(Debian's kernel ships no iio_dummy; an IIO driver on i2c-stub is the real peer that
runs here.) The frontend plays the SCMI guest driver."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scmi_driver import ScmiDriver

from vhost_device_scmi.protocol import Protocol, SensorMessage, Status
from vhost_device_scmi.sensors import IioSensor

pytestmark = pytest.mark.hostkernel("i2c-dev", "i2c-stub chip_addr=0x40", "tmp006")

ADDR = 0x40
S, M = Protocol.SENSOR, SensorMessage


def _stub_bus() -> int:
    for adapter in Path("/sys/bus/i2c/devices").glob("i2c-*"):
        if (adapter / "name").read_text().strip() == "SMBus stub driver":
            return int(adapter.name.removeprefix("i2c-"))
    raise AssertionError("no i2c-stub adapter")


def _set_word(bus: int, register: int, value: int) -> None:
    """A register as the TMP006 holds it: big-endian, so byte-swapped for SMBus."""
    swapped = ((value & 0xFF) << 8) | (value >> 8)
    subprocess.run(
        ["i2cset", "-y", str(bus), hex(ADDR), hex(register), hex(swapped), "w"], check=True
    )


@pytest.fixture(scope="module")
def tmp006() -> Iterator[Path]:
    """The kernel's IIO device of a TMP006 at 25 °C on the stub bus."""
    bus = _stub_bus()
    _set_word(bus, 0xFE, 0x5449)  # manufacturer: TI
    _set_word(bus, 0xFF, 0x0067)  # device id
    _set_word(bus, 0x02, 0x7480)  # config: converting, data ready
    _set_word(bus, 0x01, 800 << 2)  # ambient: 800 · 1/32 °C
    _set_word(bus, 0x00, 0x0100)  # object voltage
    Path(f"/sys/bus/i2c/devices/i2c-{bus}/new_device").write_text(f"tmp006 {ADDR:#x}\n")
    client = Path(f"/sys/bus/i2c/devices/{bus}-{ADDR:04x}")
    deadline = time.monotonic() + 10
    while not (devices := list(client.glob("iio:device*"))):
        assert time.monotonic() < deadline, "tmp006 did not register an IIO device"
        time.sleep(0.1)
    try:
        yield devices[0]
    finally:
        Path(f"/sys/bus/i2c/devices/i2c-{bus}/delete_device").write_text(f"{ADDR:#x}\n")


@pytest.fixture
def scmi(connect, tmp006: Path) -> ScmiDriver:  # noqa: ANN001
    return connect(lambda: [IioSensor(tmp006, "in_temp", "ambient")])


def test_the_kernel_scale_becomes_exponent_and_resolution(scmi: ScmiDriver) -> None:
    status, data = scmi.call(S, M.DESCRIPTION_GET, 0)
    assert status == Status.SUCCESS
    (high,) = (int.from_bytes(data[12:16], "little"),)
    assert high & 0xFF == 0x2  # °C
    assert (high >> 11) & 0x1F == -5 & 0x1F  # 31.25 m°C = 3125 · 10^-5 °C
    assert data[16:32].rstrip(b"\0") == b"ambient"
    resolution = int.from_bytes(data[36:40], "little")
    assert resolution & 0x7FFFFFF == 3125


def test_reading_through_the_kernel_driver(scmi: ScmiDriver) -> None:
    status, data = scmi.call(S, M.READING_GET, 0, 0)
    assert status == Status.SUCCESS
    assert int.from_bytes(data[:8], "little", signed=True) == 800 * 3125  # 25.00000 °C
