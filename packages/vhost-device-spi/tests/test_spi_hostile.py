"""Hostile requests, each its own test: every one is answered (or, with nowhere to put
a result, completed empty), none reaches the bus, and the queue keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from spi_driver import OK, PARAM_ERR, TRANS_ERR, SpiDriver, head, spi_driver

from vhost_device_spi.host import SimController


@pytest.fixture
def sim() -> SimController:
    return SimController()


@pytest.fixture
def driver(sim: SimController, tmp_path: Path) -> Iterator[SpiDriver]:
    with spi_driver(sim, tmp_path) as driver:
        yield driver
        # whatever came before, the next well-formed request is served
        assert driver.transfer(head(), b"after", 5).rx == b"after"


def _raw(driver: SpiDriver, buffers: list[tuple[int, int, bool]]) -> tuple[int, int]:
    """Post one chain as given; its (used length, first byte of the last buffer)."""
    index = driver.queue.driver.add(buffers)
    driver.publish()
    ((used_head, used),) = driver.queue.wait_used(1)
    assert used_head == index
    last_gpa = buffers[-1][0]
    return used, driver.ram.memory.read(last_gpa, 1)[0]


def test_missing_header(driver: SpiDriver, sim: SimController) -> None:
    result = driver.put(b"\xff")
    assert _raw(driver, [(result, 1, True)]) == (1, PARAM_ERR)
    assert not sim.history


def test_short_header(driver: SpiDriver, sim: SimController) -> None:
    answer = driver.transfer(head().encode()[:31], None, 4)
    assert (answer.result, answer.rx, answer.used) == (PARAM_ERR, b"\xee" * 4, 5)
    assert not sim.history


def test_header_of_tx_bytes_only(driver: SpiDriver, sim: SimController) -> None:
    # 20 readable bytes in all: a head's worth is not there, so no tx can be told apart
    answer = driver.transfer(b"\x00" * 12, b"\x00" * 8, 8)
    assert answer.result == PARAM_ERR
    assert not sim.history


def test_a_head_split_across_descriptors_is_still_a_head(driver: SpiDriver) -> None:
    raw = head().encode()
    rx, result = driver.ram.alloc(2), driver.put(b"\xff")
    chain = [(driver.put(raw[:10]), 10, False), (driver.put(raw[10:] + b"hi"), 24, False)]
    assert _raw(driver, [*chain, (rx, 2, True), (result, 1, True)]) == (3, OK)
    assert driver.ram.memory.read(rx, 2) == b"hi"


def test_result_before_the_head_is_rejected(driver: SpiDriver, sim: SimController) -> None:
    result, th = driver.put(b"\xff"), driver.put(head().encode())
    # a writable descriptor before a readable one: the core refuses the chain
    used, _ = _raw(driver, [(result, 1, True), (th, 32, False)])
    assert used == 0
    assert driver.ram.memory.read(result, 1) == b"\xff"  # nothing written
    assert not sim.history


def test_status_in_a_read_only_descriptor(driver: SpiDriver, sim: SimController) -> None:
    th, status = driver.put(head().encode()), driver.put(b"\xff")
    assert _raw(driver, [(th, 32, False), (driver.put(b"tx"), 2, False), (status, 1, False)]) == (
        0,
        0xFF,
    )
    assert not sim.history


def test_a_zero_length_result_descriptor(driver: SpiDriver, sim: SimController) -> None:
    th, status = driver.put(head().encode()), driver.put(b"\xff")
    assert _raw(driver, [(th, 32, False), (driver.put(b"t"), 1, False), (status, 0, True)]) == (
        0,
        0xFF,
    )
    assert not sim.history


def test_a_buffer_outside_guest_memory(driver: SpiDriver, sim: SimController) -> None:
    th, status = driver.put(head().encode()), driver.put(b"\xff")
    assert _raw(driver, [(th, 32, False), (1 << 44, 4, False), (status, 1, True)]) == (0, 0xFF)
    assert not sim.history


def test_a_length_past_the_end_of_guest_memory(driver: SpiDriver, sim: SimController) -> None:
    th, status = driver.put(head().encode()), driver.put(b"\xff")
    end = driver.ram.gpa + driver.ram.size
    assert _raw(driver, [(th, 32, False), (end - 8, 64, False), (status, 1, True)]) == (0, 0xFF)
    assert not sim.history


def test_a_transfer_over_the_message_limit(driver: SpiDriver, sim: SimController) -> None:
    big = sim.message_limit + 1  # 1 MiB + 1 of tx: never read, never sent
    th, tx, status = driver.put(head().encode()), driver.ram.alloc(big), driver.put(b"\xff")
    assert _raw(driver, [(th, 32, False), (tx, big, False), (status, 1, True)]) == (1, TRANS_ERR)
    assert not sim.history


def test_a_huge_rx_length_is_not_allocated(driver: SpiDriver, sim: SimController) -> None:
    th, status = driver.put(head().encode()), driver.put(b"\xff")
    rx = driver.ram.alloc(4 << 20)
    used, result = _raw(driver, [(th, 32, False), (rx, 4 << 20, True), (status, 1, True)])
    assert (used, result) == ((4 << 20) + 1, TRANS_ERR)
    assert not sim.history


def test_a_garbage_head(driver: SpiDriver, sim: SimController) -> None:
    answer = driver.transfer(b"\xff" * 32, b"ab", 2)
    assert (answer.result, answer.rx) == (PARAM_ERR, b"\xee\xee")
    assert not sim.history
