"""The device through a real socket, the frontend playing the virtio-can driver, and a
python-can node on the same in-process virtual bus on the other end."""

from __future__ import annotations

import time
from pathlib import Path

import can
import pytest
from can_driver import Driver

from vhost_device_can.device import CanBackend
from vhost_device_can.host import VirtualCanBus
from vhost_device_can.protocol import (
    CONFIG_SIZE,
    F_CAN_CLASSIC,
    F_CAN_FD,
    F_LATE_TX_ACK,
    F_RTR_FRAMES,
    QUEUE_SIZE,
    STATUS_BUSOFF,
    Frame,
    Result,
)
from vhost_user_core import STANDARD_FEATURES
from vhost_user_core.testing.harness import connected_frontend

OK, NOT_OK = Result.OK, Result.NOT_OK


def taken(bus: VirtualCanBus) -> None:
    """Wait until the device's worker has taken every frame the bus had for it."""
    deadline = time.monotonic() + 5
    while bus.waiting():
        assert time.monotonic() < deadline, "the device never took the frame"
        time.sleep(0.005)


def heard(peer: can.BusABC, timeout: float = 2.0) -> can.Message | None:
    return peer.recv(timeout)


def test_offers_classic_fd_and_rtr_and_three_queues_of_64(
    tmp_path: Path, host_bus: VirtualCanBus
) -> None:
    with connected_frontend(lambda: CanBackend(host_bus), tmp_path / "can.sock") as frontend:
        features = frontend.get_features()
        assert (
            features & (F_CAN_CLASSIC | F_CAN_FD | F_RTR_FRAMES)
            == F_CAN_CLASSIC | F_CAN_FD | F_RTR_FRAMES
        )
        assert not features & F_LATE_TX_ACK
        info = frontend.negotiate()
        assert info.queue_num == 3
        assert frontend.get_config(0, CONFIG_SIZE) == bytes(CONFIG_SIZE)


def test_classic_frame_to_the_bus(driver: Driver, peer: can.BusABC) -> None:
    assert driver.start() == OK
    assert driver.send(Frame(0x123, b"\x01\x02\x03")) == OK
    message = heard(peer)
    assert message is not None
    assert (message.arbitration_id, bytes(message.data), message.is_extended_id) == (
        0x123,
        b"\x01\x02\x03",
        False,
    )
    assert not message.is_fd and not message.is_remote_frame


def test_extended_frame_to_the_bus(driver: Driver, peer: can.BusABC) -> None:
    driver.start()
    assert driver.send(Frame(0x1ABCDEF0, b"12345678", extended=True)) == OK
    message = heard(peer)
    assert message is not None and message.is_extended_id
    assert (message.arbitration_id, bytes(message.data)) == (0x1ABCDEF0, b"12345678")


def test_fd_frame_to_the_bus(driver: Driver, peer: can.BusABC) -> None:
    driver.start()
    assert driver.send(Frame(0x42, bytes(range(64)), fd=True)) == OK
    message = heard(peer)
    assert message is not None and message.is_fd
    assert bytes(message.data) == bytes(range(64))


def test_remote_frame_to_the_bus(driver: Driver, peer: can.BusABC) -> None:
    driver.start()
    assert driver.send(Frame(0x7FF, rtr=True, rtr_length=4)) == OK
    message = heard(peer)
    assert message is not None and message.is_remote_frame
    assert (message.arbitration_id, message.dlc) == (0x7FF, 4)


@pytest.mark.parametrize(
    "message, frame",
    [
        (can.Message(arbitration_id=0x10, data=b"ab", is_extended_id=False), Frame(0x10, b"ab")),
        (
            can.Message(arbitration_id=0x10000, data=b"", is_extended_id=True),
            Frame(0x10000, b"", extended=True),
        ),
        (
            can.Message(arbitration_id=0x20, data=bytes(48), is_fd=True, is_extended_id=False),
            Frame(0x20, bytes(48), fd=True),
        ),
        (
            can.Message(arbitration_id=0x30, is_remote_frame=True, dlc=8, is_extended_id=False),
            Frame(0x30, rtr=True, rtr_length=8),
        ),
    ],
    ids=["classic", "extended", "fd", "rtr"],
)
def test_frames_from_the_bus(
    driver: Driver, peer: can.BusABC, message: can.Message, frame: Frame
) -> None:
    driver.start()
    posted = driver.post_rx()
    peer.send(message)
    assert driver.receive(posted) == [frame]


def test_tx_is_refused_while_stopped(driver: Driver, peer: can.BusABC) -> None:
    assert driver.send(Frame(1, b"x")) == NOT_OK
    driver.start()
    assert driver.stop() == OK
    assert driver.send(Frame(1, b"x")) == NOT_OK
    assert heard(peer, 0.3) is None


def test_frames_heard_while_stopped_are_dropped(
    driver: Driver, peer: can.BusABC, host_bus: VirtualCanBus
) -> None:
    posted = driver.post_rx(2)
    peer.send(can.Message(arbitration_id=1, data=b"lost", is_extended_id=False))
    taken(host_bus)
    assert driver.start() == OK
    peer.send(can.Message(arbitration_id=2, data=b"kept", is_extended_id=False))
    assert driver.receive(posted) == [Frame(2, b"kept")]


def test_stop_drops_frames_waiting_for_buffers(
    driver: Driver, peer: can.BusABC, host_bus: VirtualCanBus
) -> None:
    driver.start()
    peer.send(can.Message(arbitration_id=1, data=b"old", is_extended_id=False))
    taken(host_bus)  # the device holds it for want of a buffer
    driver.stop()
    driver.start()
    posted = driver.post_rx()
    peer.send(can.Message(arbitration_id=2, data=b"new", is_extended_id=False))
    assert driver.receive(posted) == [Frame(2, b"new")]


def test_frames_wait_for_buffers_in_order_none_lost(driver: Driver, peer: can.BusABC) -> None:
    driver.start()
    count = 3 * QUEUE_SIZE // 2  # more than the device holds: the bus keeps the rest
    for i in range(count):
        peer.send(can.Message(arbitration_id=i, data=i.to_bytes(2, "little"), is_extended_id=False))
    got: list[Frame] = []
    while len(got) < count:
        batch = min(QUEUE_SIZE // 2, count - len(got))
        got += driver.receive(driver.post_rx(batch), batch)
    assert [f.can_id for f in got] == list(range(count))


def test_a_small_rx_buffer_is_returned_empty_and_the_frame_kept(
    driver: Driver, peer: can.BusABC
) -> None:
    driver.start()
    small = driver.post_rx(1, size=16 + 3)
    peer.send(can.Message(arbitration_id=5, data=b"four", is_extended_id=False))
    assert driver.rxq.wait_used(1) == [(small[0][0], 0)]
    assert driver.receive(driver.post_rx()) == [Frame(5, b"four")]


def test_a_failed_send_sets_busoff_until_start(tmp_path: Path, bus_name: str) -> None:
    # A node that never reads and holds one frame: python-can's virtual bus then
    # refuses the next send (queue full), the way a full or downed interface does.
    deaf = can.Bus(interface="virtual", channel=bus_name, rx_queue_size=1)
    bus = VirtualCanBus(bus_name)
    try:
        with connected_frontend(lambda: CanBackend(bus), tmp_path / "can.sock") as frontend:
            frontend.start_device(3, QUEUE_SIZE)
            driver = Driver(frontend)
            driver.start()
            assert driver.send(Frame(1, b"a")) == OK
            assert driver.status() == 0
            assert driver.send(Frame(2, b"b")) == NOT_OK
            assert driver.status() == STATUS_BUSOFF
            assert driver.send(Frame(3, b"c")) == NOT_OK  # bus-off: the controller is off
            deaf.recv(0)
            deaf.recv(0)
            assert driver.start() == OK
            assert driver.status() == 0
            assert driver.send(Frame(4, b"d")) == OK
    finally:
        bus.close()
        deaf.shutdown()


def test_reset_stops_the_controller(driver: Driver) -> None:
    driver.start()
    driver.frontend.reset_device()
    assert driver.status() == 0


@pytest.mark.parametrize("msg_type", [0x0000, 0x0203, 0x0101])
def test_unknown_control_messages_are_not_ok(driver: Driver, msg_type: int) -> None:
    assert driver.control(msg_type) == NOT_OK


def test_features_follow_the_interface_not_its_name(tmp_path: Path, bus_name: str) -> None:
    bus = VirtualCanBus(bus_name)
    bus.fd_capable = False  # as a SocketCanBus on a classic-MTU interface says
    try:
        backend = CanBackend(bus)
        assert backend.features & F_CAN_FD == 0
        assert backend.features & F_CAN_CLASSIC
        assert backend.features == STANDARD_FEATURES | F_CAN_CLASSIC | F_RTR_FRAMES
    finally:
        bus.close()
