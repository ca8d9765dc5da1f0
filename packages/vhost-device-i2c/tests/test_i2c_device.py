"""The device through a real socket, the core's frontend playing the virtio-i2c driver
(virtio 1.2 §5.19): every request shape, both statuses, FAIL_NEXT groups, the sim bus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from i2c_driver import ERR, OK, Driver, r, w

from vhost_device_i2c.device import I2cBackend
from vhost_device_i2c.host import BusMap, Message, SimBus
from vhost_device_i2c.requests import VIRTIO_I2C_F_ZERO_LENGTH_REQUEST
from vhost_user_core.testing.harness import connected_frontend

A, B = 0x20, 0x50


@pytest.fixture
def sim() -> SimBus:
    return SimBus([A, B])


@pytest.fixture
def driver(sim: SimBus, tmp_path: Path) -> Iterator[Driver]:
    buses = BusMap([(sim, [A, B])])
    with connected_frontend(lambda: I2cBackend(buses), tmp_path / "i2c.sock") as frontend:
        frontend.start_device(1, 1024)
        yield Driver(frontend)


def test_offers_zero_length_requests_and_one_queue_of_1024(tmp_path: Path) -> None:
    buses = BusMap([(SimBus([A]), [A])])
    with connected_frontend(lambda: I2cBackend(buses), tmp_path / "i2c.sock") as frontend:
        assert frontend.get_features() & VIRTIO_I2C_F_ZERO_LENGTH_REQUEST
        info = frontend.negotiate()
        assert info.queue_num == 1
    assert I2cBackend.max_queue_size == 1024


def test_write_then_read_back_with_repeated_start(driver: Driver, sim: SimBus) -> None:
    assert driver.statuses(w(B, 0x10, 1, 2, 3, 4)) == [OK]
    assert sim.devices[B].cells[0x10:0x14] == b"\x01\x02\x03\x04"
    # i2ctransfer w1@0x50 0x10 r4: the offset write and the read are one transfer
    assert driver.transfer(w(B, 0x10), r(B, 4)) == [(OK, b""), (OK, b"\x01\x02\x03\x04")]


def test_a_read_continues_from_the_offset_and_wraps(driver: Driver, sim: SimBus) -> None:
    sim.devices[A].cells[:] = bytes(range(256))
    assert driver.transfer(w(A, 0xFE), r(A, 2)) == [(OK, b""), (OK, b"\xfe\xff")]
    assert driver.transfer(r(A, 3)) == [(OK, b"\x00\x01\x02")]  # current address read


def test_zero_length_write_is_an_smbus_quick(driver: Driver) -> None:
    assert driver.statuses(w(A)) == [OK]  # what i2cdetect sends
    assert driver.statuses(w(0x21)) == [ERR]


def test_an_unlisted_address_gets_an_error(driver: Driver) -> None:
    assert driver.transfer(r(0x51, 1)) == [(ERR, b"")]
    assert driver.statuses(w(0x7F, 0, 0)) == [ERR]


def test_every_request_gets_its_own_status(driver: Driver, sim: SimBus) -> None:
    """Three separate transfers posted at once (one batch): upstream gives all three
    one status; here the unlisted one fails alone."""
    posted = [driver.post(w(A, 0, 0xAA), False), driver.post(w(0x33, 0), False)]
    posted.append(driver.post(w(B, 0, 0xBB), False))
    driver.queue.publish()
    driver.queue.wait_used(3)
    statuses = [driver.ram.memory.read(p.status_gpa, 1)[0] for p in posted]
    assert statuses == [OK, ERR, OK]
    assert sim.devices[A].cells[0] == 0xAA and sim.devices[B].cells[0] == 0xBB


def test_a_failing_group_fails_every_request_of_it(driver: Driver, sim: SimBus) -> None:
    # FAIL_NEXT chains the three: the unlisted middle one fails the whole transfer
    assert driver.statuses(w(A, 5, 0x11), w(0x33, 0), w(A, 6, 0x22)) == [ERR, ERR, ERR]
    assert sim.devices[A].cells[5:7] == b"\x00\x00"  # nothing of it reached the bus
    assert driver.statuses(w(A, 5, 0x11)) == [OK]  # and the queue goes on


def test_a_failed_group_has_every_status_written_before_its_first_request_returns(
    driver: Driver,
) -> None:
    """Linux's driver, at the first failed request of a transfer, frees all of its
    requests without waiting for the rest: a status the device wrote after that would
    land in freed guest memory (a guest kernel Oops in the tests' i2ctransfer to an
    unlisted address). So when the first request is back, every status is there."""
    for _ in range(20):
        posted = [driver.post(w(0x51, 0), True), driver.post(r(0x51, 1), False)]
        driver.queue.publish()
        used = driver.queue.wait_used(1)  # as the guest: wakes at the first
        statuses = [driver.ram.memory.read(p.status_gpa, 1)[0] for p in posted]
        assert statuses == [ERR, ERR]
        if len(used) < 2:
            driver.queue.wait_used(2 - len(used))


def test_a_group_may_span_devices_of_one_bus(driver: Driver, sim: SimBus) -> None:
    assert driver.statuses(w(A, 0, 1), w(B, 0, 2)) == [OK, OK]
    assert (sim.devices[A].cells[0], sim.devices[B].cells[0]) == (1, 2)


def test_a_group_split_across_kicks_waits_for_its_end(driver: Driver, sim: SimBus) -> None:
    sim.devices[B].cells[0x40] = 0x5A
    first = driver.post(w(B, 0x40), True)
    driver.queue.publish()
    with pytest.raises(TimeoutError):  # held: its group is not complete
        driver.queue.wait_used(1, timeout=0.3)
    second = driver.post(r(B, 1), False)
    driver.queue.publish()
    assert {head for head, _ in driver.queue.wait_used(2)} == {first.head, second.head}
    assert driver.ram.memory.read(second.data_gpa, 1) == b"\x5a"


def test_sim_bus_transfer_directly() -> None:
    sim = SimBus([B])
    assert sim.transfer([Message(B, False, b"\x00abc")]) == [b""]
    assert sim.transfer([Message(B, False, b"\x01"), Message(B, True, length=2)]) == [b"", b"bc"]
