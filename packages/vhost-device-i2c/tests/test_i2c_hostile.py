"""Hostile requests, each its own test: each is answered (ERR where it has a status
byte, else completed empty), and the next well-formed request is still served."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from i2c_driver import ERR, M_RD, NO_STATUS, OK, Driver, w

from vhost_device_i2c.device import I2cBackend
from vhost_device_i2c.host import BusMap, SimBus
from vhost_user_core.testing.harness import connected_frontend

A = 0x50


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    buses = BusMap([(SimBus([A]), [A])])
    with connected_frontend(lambda: I2cBackend(buses), tmp_path / "i2c.sock") as frontend:
        frontend.start_device(1, 256)
        yield Driver(frontend)
        assert driver_still_serves(Driver(frontend))


def driver_still_serves(driver: Driver) -> bool:
    return driver.statuses(w(A, 0, 0x42)) == [OK]


def answer(driver: Driver, chain: list[tuple[int, int, bool]]) -> int:
    """Post one raw chain; its used length."""
    head = driver.raw(chain)
    driver.queue.publish()
    ((used_head, length),) = driver.queue.wait_used(1)
    assert used_head == head
    return length


def status_of(driver: Driver, gpa: int) -> int:
    return driver.ram.memory.read(gpa, 1)[0]


def test_missing_header(driver: Driver) -> None:
    status = driver.status()
    assert answer(driver, [(status, 1, True)]) == 1
    assert status_of(driver, status) == ERR


def test_short_header(driver: Driver) -> None:
    header, status = driver.ram.alloc(4), driver.status()
    driver.ram.memory.write(header, struct.pack("<HH", A << 1, 0))
    assert answer(driver, [(header, 4, False), (status, 1, True)]) == 1
    assert status_of(driver, status) == ERR


def test_status_in_a_read_only_descriptor(driver: Driver) -> None:
    status = driver.status()
    length = answer(driver, [(driver.header(A, 0), 8, False), (status, 1, False)])
    assert length == 0
    assert status_of(driver, status) == NO_STATUS  # never written: it is the driver's


def test_read_request_with_device_readable_data(driver: Driver) -> None:
    data, status = driver.ram.alloc(4), driver.status()
    chain = [(driver.header(A, M_RD), 8, False), (data, 4, False), (status, 1, True)]
    assert answer(driver, chain) == 1
    assert status_of(driver, status) == ERR


def test_write_request_with_device_writable_data(driver: Driver) -> None:
    data, status = driver.ram.alloc(4), driver.status()
    chain = [(driver.header(A, 0), 8, False), (data, 4, True), (status, 1, True)]
    assert answer(driver, chain) == 1
    assert status_of(driver, status) == ERR  # the last writable byte is the status


def test_buffer_length_over_guest_memory(driver: Driver) -> None:
    data, status = driver.ram.alloc(16), driver.status()
    chain = [(driver.header(A, M_RD), 8, False), (data, 1 << 30, True), (status, 1, True)]
    assert answer(driver, chain) == 0  # the core rejects the chain: nothing is written
    assert status_of(driver, status) == NO_STATUS


def test_read_longer_than_an_i2c_message(driver: Driver) -> None:
    data, status = driver.ram.alloc(70000), driver.status()
    chain = [(driver.header(A, M_RD), 8, False), (data, 70000, True), (status, 1, True)]
    assert answer(driver, chain) == 1
    assert status_of(driver, status) == ERR


def test_malformed_request_inside_a_group(driver: Driver) -> None:
    good = driver.post(w(A, 0x10, 0x77), True)
    bad_status = driver.status()
    bad = driver.raw([(bad_status, 1, True)])  # no header at all
    driver.queue.publish()
    used = dict(driver.queue.wait_used(2))
    assert used == {good.head: 1, bad: 1}
    assert status_of(driver, good.status_gpa) == OK  # sent alone: its group ended
    assert status_of(driver, bad_status) == ERR
