"""Hostile descriptors on both queues, each its own case: every one fails that buffer
(an ERR or INVALID status where there is room for one, nothing where there is not),
and the device goes on serving the next request."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpio_driver import GpioDriver

from vhost_device_gpio.device import GpioBackend
from vhost_device_gpio.host import MockChip
from vhost_user_core.testing.harness import connected_frontend

GET_VALUE = 4
REQUEST = struct.pack("<HHI", GET_VALUE, 0, 0)
VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE = 1, 2


@pytest.fixture
def gpio(tmp_path: Path) -> Iterator[GpioDriver]:
    chip = MockChip(4)
    with connected_frontend(lambda: GpioBackend(chip), tmp_path / "g.sock") as frontend:
        yield GpioDriver(frontend)


def _still_serves(gpio: GpioDriver) -> None:
    assert gpio.request(GET_VALUE, 1) == b"\x00\x00"


def _used(gpio: GpioDriver, chain: list[tuple[int, int, bool]], queue: int = 0) -> int:
    q = gpio.requestq if queue == 0 else gpio.eventq
    head = q.driver.add(chain)
    q.publish()
    ((used_head, length),) = q.wait_used(1)
    assert used_head == head
    return length


def test_request_without_a_response_buffer(gpio: GpioDriver) -> None:
    src = gpio.ram.alloc(8)
    gpio.ram.memory.write(src, REQUEST)
    assert _used(gpio, [(src, 8, False)]) == 0
    _still_serves(gpio)


def test_short_request(gpio: GpioDriver) -> None:
    assert gpio.raw(REQUEST[:4]) == b"\x01\x00"
    _still_serves(gpio)


def test_long_request(gpio: GpioDriver) -> None:
    assert gpio.raw(REQUEST + b"\0\0\0\0") == b"\x01\x00"
    _still_serves(gpio)


def test_request_without_readable_bytes(gpio: GpioDriver) -> None:
    assert gpio.raw(b"") == b"\x01\x00"
    _still_serves(gpio)


def test_response_buffer_of_one_byte_gets_the_status_only(gpio: GpioDriver) -> None:
    assert gpio.raw(REQUEST, room=1) == b"\x00"
    _still_serves(gpio)


def test_request_split_over_descriptors_is_served(gpio: GpioDriver) -> None:
    a, b, out = gpio.ram.alloc(4), gpio.ram.alloc(4), gpio.ram.alloc(2)
    gpio.ram.memory.write(a, REQUEST[:4])
    gpio.ram.memory.write(b, REQUEST[4:])
    assert _used(gpio, [(a, 4, False), (b, 4, False), (out, 2, True)]) == 2
    assert gpio.ram.memory.read(out, 2) == b"\x00\x00"


def test_request_outside_guest_memory(gpio: GpioDriver) -> None:
    out = gpio.ram.alloc(2)
    assert _used(gpio, [(1 << 44, 8, False), (out, 2, True)]) == 0
    _still_serves(gpio)


def test_response_outside_guest_memory(gpio: GpioDriver) -> None:
    src = gpio.ram.alloc(8)
    gpio.ram.memory.write(src, REQUEST)
    assert _used(gpio, [(src, 8, False), (1 << 44, 2, True)]) == 0
    _still_serves(gpio)


def test_descriptor_loop(gpio: GpioDriver) -> None:
    q = gpio.requestq
    src = gpio.ram.alloc(8)
    gpio.ram.memory.write(src, REQUEST)
    head = q.driver.add([(src, 8, False), (gpio.ram.alloc(2), 2, True)])
    q.driver.write_raw_descriptor((head + 1) % q.size, src, 8, VIRTQ_DESC_F_NEXT, head)
    q.publish()
    assert q.wait_used(1) == [(head, 0)]
    _still_serves(gpio)


def test_head_index_beyond_the_ring(gpio: GpioDriver) -> None:
    q = gpio.eventq
    q.driver.push_avail(q.size + 5)
    q.publish()
    _still_serves(gpio)


def test_event_buffer_without_room_for_the_status(gpio: GpioDriver) -> None:
    src = gpio.ram.alloc(2)
    assert _used(gpio, [(src, 2, False)], queue=1) == 0
    _still_serves(gpio)


def test_event_buffer_with_a_short_request(gpio: GpioDriver) -> None:
    src, out = gpio.ram.alloc(1), gpio.ram.alloc(1)
    gpio.ram.memory.write(out, b"\x07")
    assert _used(gpio, [(src, 1, False), (out, 1, True)], queue=1) == 1
    assert gpio.ram.memory.read(out, 1) == b"\x00"  # INVALID
    _still_serves(gpio)


def test_event_buffer_outside_guest_memory(gpio: GpioDriver) -> None:
    assert _used(gpio, [(1 << 44, 2, False), (1 << 44, 1, True)], queue=1) == 0
    _still_serves(gpio)
