"""The eventq through the frontend: edge interrupts each way, latched edges, level
interrupts (at once when already at level, else at the next edge), the bad buffers the
spec answers INVALID, IRQ type NONE handing the buffer back, and reconnect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gpio_driver import GpioDriver

from vhost_device_gpio.device import GpioBackend
from vhost_device_gpio.host import MockChip
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import connected_frontend, running_daemon

IRQ_TYPE, SET_DIR = 6, 3
RISING, FALLING, BOTH, HIGH, LOW = 1, 2, 3, 4, 8
OK = b"\x00\x00"
VALID, INVALID = b"\x01", b"\x00"


@pytest.fixture
def chip() -> MockChip:
    return MockChip(8)


@pytest.fixture
def gpio(chip: MockChip, tmp_path: Path) -> Iterator[GpioDriver]:
    with connected_frontend(lambda: GpioBackend(chip), tmp_path / "g.sock") as frontend:
        yield GpioDriver(frontend)


def test_rising_edge_fires_and_falling_does_not(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 2, RISING) == OK
    gpio.arm(2)
    assert gpio.quiet()
    chip.drive(2, 1)
    assert gpio.fired() == [(2, 1, VALID)]
    gpio.arm(2)
    chip.drive(2, 0)
    assert gpio.quiet()


def test_falling_edge(gpio: GpioDriver, chip: MockChip) -> None:
    chip.drive(3, 1)
    assert gpio.request(IRQ_TYPE, 3, FALLING) == OK
    gpio.arm(3)
    chip.drive(3, 0)
    assert gpio.fired() == [(3, 1, VALID)]


def test_both_edges(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 0, BOTH) == OK
    for level in (1, 0, 1):
        gpio.arm(0)
        chip.drive(0, level)
        assert gpio.fired() == [(0, 1, VALID)]


def test_an_edge_without_a_buffer_is_latched(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 1, RISING) == OK
    assert gpio.request(IRQ_TYPE, 0, BOTH) == OK
    gpio.arm(0)  # line 0's interrupt after line 1's edge: that edge has been seen
    chip.drive(1, 1)
    chip.drive(0, 1)
    assert gpio.fired() == [(0, 1, VALID)]
    gpio.arm(1)
    assert gpio.fired() == [(1, 1, VALID)]


def test_only_the_waiting_line_fires(gpio: GpioDriver, chip: MockChip) -> None:
    for line in (4, 5):
        assert gpio.request(IRQ_TYPE, line, RISING) == OK
        gpio.arm(line)
    chip.drive(5, 1)
    assert gpio.fired() == [(5, 1, VALID)]
    assert gpio.quiet()


def test_level_high_fires_at_once_when_high(gpio: GpioDriver, chip: MockChip) -> None:
    chip.drive(6, 1)
    assert gpio.request(IRQ_TYPE, 6, HIGH) == OK
    gpio.arm(6)
    assert gpio.fired() == [(6, 1, VALID)]
    gpio.arm(6)  # still high: the next buffer completes at once too, as a level does
    assert gpio.fired() == [(6, 1, VALID)]


def test_level_high_waits_for_the_rising_edge(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 6, HIGH) == OK
    gpio.arm(6)
    assert gpio.quiet()
    chip.drive(6, 1)
    assert gpio.fired() == [(6, 1, VALID)]


def test_level_low(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 7, LOW) == OK
    gpio.arm(7)  # the line is low
    assert gpio.fired() == [(7, 1, VALID)]
    chip.drive(7, 1)
    gpio.arm(7)
    assert gpio.quiet()
    chip.drive(7, 0)
    assert gpio.fired() == [(7, 1, VALID)]


def test_level_is_not_latched(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 6, HIGH) == OK
    chip.drive(6, 1)
    chip.drive(6, 0)  # high and gone before any buffer: nothing to report
    gpio.arm(6)
    assert gpio.quiet()


def test_irq_type_none_hands_the_buffer_back_invalid(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 2, RISING) == OK
    gpio.arm(2)
    assert gpio.request(IRQ_TYPE, 2, 0) == OK
    assert gpio.fired() == [(2, 1, INVALID)]
    chip.drive(2, 1)
    assert gpio.quiet()


def test_buffer_for_a_line_without_irq_type(gpio: GpioDriver) -> None:
    gpio.arm(3)
    assert gpio.fired() == [(3, 1, INVALID)]


def test_second_buffer_for_the_same_line(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 3, RISING) == OK
    gpio.arm(3)
    gpio.arm(3)
    assert gpio.fired() == [(3, 1, INVALID)]
    chip.drive(3, 1)  # the first one still waits, and fires
    assert gpio.fired() == [(3, 1, VALID)]


def test_buffer_for_a_line_out_of_range(gpio: GpioDriver) -> None:
    gpio.arm(8)
    assert gpio.fired() == [(8, 1, INVALID)]


def test_stopping_the_eventq_returns_held_buffers(gpio: GpioDriver) -> None:
    assert gpio.request(IRQ_TYPE, 1, BOTH) == OK
    gpio.arm(1)
    # A request round trip on the same worker: the eventq kick, sent first, has been
    # handled (the buffer is held), so GET_VRING_BASE finds it even on a loaded machine.
    gpio.request(2, 1)
    gpio.frontend.get_vring_base(1)
    assert gpio.fired() == [(1, 1, INVALID)]


def test_disconnect_releases_every_line(chip: MockChip, tmp_path: Path) -> None:
    socket = tmp_path / "g.sock"
    with running_daemon(lambda: GpioBackend(chip), socket):
        with Frontend.connect(socket) as frontend:
            gpio = GpioDriver(frontend)
            assert gpio.request(IRQ_TYPE, 1, RISING) == OK
            assert gpio.request(SET_DIR, 2, 1) == OK
            gpio.arm(1)
        with Frontend.connect(socket) as frontend:  # reconnect: a fresh device
            gpio = GpioDriver(frontend)
            assert gpio.request(2, 2) == b"\x00\x02"  # line 2 is an input again
            assert gpio.request(IRQ_TYPE, 1, FALLING) == OK  # no NONE needed: released
            chip.drive(1, 1)
            chip.drive(1, 0)
            gpio.arm(1)
            assert gpio.fired() == [(1, 1, VALID)]


def test_reset_device_releases_every_line(gpio: GpioDriver, chip: MockChip) -> None:
    assert gpio.request(IRQ_TYPE, 1, RISING) == OK
    assert gpio.request(SET_DIR, 2, 1) == OK
    gpio.frontend.reset_device()
    assert chip.direction(2) == 2  # IN: the line went back
    chip.drive(1, 1)
    assert chip.read_edges(1) == []  # line 1's edges are no longer watched
