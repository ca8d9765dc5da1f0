"""Hostile descriptor chains, each its own test: each is answered (NOT_OK where it has
room for a result, else completed empty), and the next well-formed request is served."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import can
import pytest
from can_driver import NO_RESULT, Driver

from vhost_device_can.protocol import CTRLQ, SET_CTRL_MODE_START, TXQ, Frame, Result, encode_tx

VIRTQ_DESC_F_NEXT = 1  # virtio 2.7.5

FAR = 1 << 44  # outside guest memory


@pytest.fixture
def started(driver: Driver) -> Iterator[Driver]:
    assert driver.start() == Result.OK
    yield driver
    assert driver.send(Frame(1, b"still")) == Result.OK
    assert driver.start() == Result.OK


def _buf(driver: Driver, data: bytes) -> int:
    gpa = driver.ram.alloc(max(1, len(data)))
    driver.ram.memory.write(gpa, data)
    return gpa


def _result(driver: Driver) -> int:
    return _buf(driver, bytes([NO_RESULT]))


def test_tx_outside_memory(started: Driver) -> None:
    result = _result(started)
    assert started.raw(TXQ, [(FAR, 18, False), (result, 1, True)]) == 0
    assert started.ram.memory.read(result, 1)[0] == NO_RESULT


def test_tx_without_room_for_the_result(started: Driver) -> None:
    request = encode_tx(Frame(1, b"no"))
    assert started.raw(TXQ, [(_buf(started, request), len(request), False)]) == 0


def test_tx_with_only_a_writable_buffer(started: Driver) -> None:
    result = _result(started)
    assert started.raw(TXQ, [(result, 1, True)]) == 1
    assert started.ram.memory.read(result, 1)[0] == Result.NOT_OK


def test_tx_oversized_request(started: Driver) -> None:
    request = encode_tx(Frame(1, bytes(64), fd=True)) + bytes(4096)
    result = _result(started)
    assert started.raw(TXQ, [(_buf(started, request), len(request), False), (result, 1, True)]) == 1
    assert started.ram.memory.read(result, 1)[0] == Result.NOT_OK


def test_tx_split_over_many_descriptors_is_still_one_request(started: Driver) -> None:
    request = encode_tx(Frame(1, b"split"))
    chain = [(_buf(started, bytes([b])), 1, False) for b in request]
    result = _result(started)
    assert started.raw(TXQ, [*chain, (result, 1, True)]) == 1
    assert started.ram.memory.read(result, 1)[0] == Result.OK


def test_tx_writable_before_readable(started: Driver) -> None:
    request = encode_tx(Frame(1, b"x"))
    result = _result(started)
    # the ring's rule (readable first) is the core's to enforce: the chain is malformed
    assert started.raw(TXQ, [(result, 1, True), (_buf(started, request), len(request), False)]) == 0


def test_control_outside_memory(started: Driver) -> None:
    assert started.raw(CTRLQ, [(FAR, 2, False), (_result(started), 1, True)]) == 0


def test_control_too_short(started: Driver) -> None:
    result = _result(started)
    assert started.raw(CTRLQ, [(_buf(started, b"\x01"), 1, False), (result, 1, True)]) == 1
    assert started.ram.memory.read(result, 1)[0] == Result.NOT_OK


def test_control_too_long(started: Driver) -> None:
    request = struct.pack("<HH", SET_CTRL_MODE_START, 0)
    result = _result(started)
    assert started.raw(CTRLQ, [(_buf(started, request), 4, False), (result, 1, True)]) == 1
    assert started.ram.memory.read(result, 1)[0] == Result.NOT_OK


def test_control_without_room_for_the_result(started: Driver) -> None:
    request = struct.pack("<H", SET_CTRL_MODE_START)
    assert started.raw(CTRLQ, [(_buf(started, request), 2, False)]) == 0


def test_rx_buffer_outside_memory(started: Driver, peer: can.BusABC) -> None:
    head = started.rxq.driver.add([(FAR, 80, True)])
    started.rxq.publish()
    peer.send(can.Message(arbitration_id=3, data=b"x", is_extended_id=False))
    assert started.rxq.wait_used(1) == [(head, 0)]
    assert started.receive(started.post_rx()) == [Frame(3, b"x")]


def test_rx_buffer_device_readable(started: Driver, peer: can.BusABC) -> None:
    head = started.rxq.driver.add([(_buf(started, bytes(80)), 80, False)])
    started.rxq.publish()
    peer.send(can.Message(arbitration_id=4, data=b"y", is_extended_id=False))
    assert started.rxq.wait_used(1) == [(head, 0)]
    assert started.receive(started.post_rx()) == [Frame(4, b"y")]


def test_rx_buffer_too_small(started: Driver, peer: can.BusABC) -> None:
    (small,) = started.post_rx(1, size=8)
    peer.send(can.Message(arbitration_id=5, data=b"z", is_extended_id=False))
    assert started.rxq.wait_used(1) == [(small[0], 0)]
    assert started.receive(started.post_rx()) == [Frame(5, b"z")]


def test_tx_descriptor_loop(started: Driver) -> None:
    request = encode_tx(Frame(1, b"loop"))
    src = _buf(started, request)
    q = started.txq
    head = q.driver.add([(src, len(request), False), (_result(started), 1, True)])
    q.driver.write_raw_descriptor((head + 1) % q.size, src, len(request), VIRTQ_DESC_F_NEXT, head)
    q.publish()
    assert q.wait_used(1) == [(head, 0)]


def test_rx_head_index_beyond_the_ring(started: Driver) -> None:
    started.rxq.driver.push_avail(started.rxq.size + 5)
    started.rxq.publish()  # the rxq is broken until reset; the txq still serves (teardown)
