"""Every requestq request through a real socket and the core's frontend, and each bad
request answered with the spec's VIRTIO_GPIO_STATUS_ERR, against the mock chip."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpio_driver import GpioDriver

from vhost_device_gpio.device import GpioBackend
from vhost_device_gpio.host import MockChip
from vhost_device_gpio.protocol import DEVICE_ID, F_IRQ
from vhost_user_core.testing.harness import connected_frontend

GET_NAMES, GET_DIR, SET_DIR, GET_VALUE, SET_VALUE, IRQ_TYPE = range(1, 7)
OK, ERR = b"\x00\x00", b"\x01\x00"
NONE, OUT, IN = 0, 1, 2


@pytest.fixture
def chip() -> MockChip:
    return MockChip(8)


@pytest.fixture
def gpio(chip: MockChip, tmp_path: Path) -> Iterator[GpioDriver]:
    with connected_frontend(lambda: GpioBackend(chip), tmp_path / "g.sock") as frontend:
        yield GpioDriver(frontend)


def test_features_queues_and_config(chip: MockChip, tmp_path: Path) -> None:
    with connected_frontend(lambda: GpioBackend(chip), tmp_path / "g.sock") as frontend:
        assert frontend.get_features() & F_IRQ
        frontend.negotiate()
        assert frontend.get_queue_num() == 2
        names = b"".join(f"gpio{i}\0".encode() for i in range(8))
        assert frontend.get_config(0, 8) == struct.pack("<HxxI", 8, len(names))
    assert DEVICE_ID == 41


def test_get_line_names(gpio: GpioDriver) -> None:
    names = b"".join(f"gpio{i}\0".encode() for i in range(8))
    assert gpio.request(GET_NAMES, 0, room=1 + len(names)) == b"\x00" + names


def test_get_line_names_needs_room_for_the_whole_blob(gpio: GpioDriver) -> None:
    assert gpio.request(GET_NAMES, 0, room=10) == ERR


def test_get_line_names_with_a_line_or_value_is_refused(gpio: GpioDriver) -> None:
    assert gpio.request(GET_NAMES, 1, room=100) == ERR
    assert gpio.request(GET_NAMES, 0, 1, room=100) == ERR


def test_directions(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(GET_DIR, 3) == b"\x00" + bytes((IN,))
    assert gpio.request(SET_DIR, 3, OUT) == OK
    assert gpio.request(GET_DIR, 3) == b"\x00" + bytes((OUT,))
    assert gpio.request(SET_DIR, 3, NONE) == OK
    assert gpio.request(GET_DIR, 3) == b"\x00" + bytes((NONE,))


def test_output_value_is_applied_when_the_line_becomes_output(gpio: GpioDriver) -> None:
    # Linux's direction_output: SET_VALUE first, then SET_DIRECTION OUT.
    assert gpio.request(SET_VALUE, 2, 1) == OK
    assert gpio.request(SET_DIR, 2, OUT) == OK
    assert gpio.request(GET_VALUE, 2) == b"\x00\x01"
    assert gpio.request(SET_VALUE, 2, 0) == OK
    assert gpio.request(GET_VALUE, 2) == b"\x00\x00"


def test_an_input_reads_the_driven_level(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(GET_VALUE, 5) == b"\x00\x00"
    chip.drive(5, 1)
    assert gpio.request(GET_VALUE, 5) == b"\x00\x01"


@pytest.mark.parametrize("type_", [GET_DIR, SET_DIR, GET_VALUE, SET_VALUE, IRQ_TYPE])
def test_line_out_of_range(gpio: GpioDriver, type_: int) -> None:
    assert gpio.request(type_, 8, 0) == ERR
    assert gpio.request(type_, 0xFFFF, 0) == ERR


@pytest.mark.parametrize("direction", [3, 4, 0xFF, 0x100])
def test_invalid_direction(gpio: GpioDriver, direction: int) -> None:
    assert gpio.request(SET_DIR, 0, direction) == ERR


@pytest.mark.parametrize("value", [2, 0xFFFFFFFF])
def test_invalid_value(gpio: GpioDriver, value: int) -> None:
    assert gpio.request(SET_VALUE, 0, value) == ERR


@pytest.mark.parametrize("irq_type", [5, 6, 7, 9, 0x10, 0xC])
def test_invalid_irq_type(gpio: GpioDriver, irq_type: int) -> None:
    assert gpio.request(IRQ_TYPE, 0, irq_type) == ERR


@pytest.mark.parametrize("type_", [0, 7, 0xFFFF])
def test_unknown_request_type(gpio: GpioDriver, type_: int) -> None:
    assert gpio.request(type_, 0) == ERR


def test_get_requests_with_a_value_are_refused(gpio: GpioDriver) -> None:
    assert gpio.request(GET_DIR, 0, 1) == ERR
    assert gpio.request(GET_VALUE, 0, 1) == ERR


def test_irq_type_change_needs_none_first(gpio: GpioDriver) -> None:
    assert gpio.request(IRQ_TYPE, 1, 1) == OK  # rising
    assert gpio.request(IRQ_TYPE, 1, 2) == ERR  # falling over rising
    assert gpio.request(IRQ_TYPE, 1, 4) == ERR  # level over rising
    assert gpio.request(IRQ_TYPE, 1, 1) == OK  # the same type again is no change
    assert gpio.request(IRQ_TYPE, 1, 0) == OK
    assert gpio.request(IRQ_TYPE, 1, 2) == OK


def test_an_interrupt_line_cannot_become_an_output(gpio: GpioDriver) -> None:
    assert gpio.request(IRQ_TYPE, 1, 3) == OK
    assert gpio.request(SET_DIR, 1, OUT) == ERR
    assert gpio.request(GET_DIR, 1) == b"\x00" + bytes((IN,))


def test_an_output_line_takes_no_irq_type(gpio: GpioDriver) -> None:
    assert gpio.request(SET_DIR, 1, OUT) == OK
    assert gpio.request(IRQ_TYPE, 1, 1) == ERR


def test_every_change_is_logged(gpio: GpioDriver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="vhost_device_gpio.host")
    gpio.request(SET_VALUE, 4, 1)
    gpio.request(SET_DIR, 4, OUT)
    messages = [record.getMessage() for record in caplog.records]
    assert "mock line 4: value 1" in messages
    assert "mock line 4: direction out" in messages
