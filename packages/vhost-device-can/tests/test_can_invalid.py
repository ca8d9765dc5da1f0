"""Every TX frame the negotiated features or the draft's rules forbid, each its own
case: answered NOT_OK, nothing reaches the bus, and the next good frame still goes.
And frames from the bus a guest did not negotiate are not given to it."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import can
import pytest
from can_driver import Driver

from vhost_device_can.device import CanBackend
from vhost_device_can.host import VirtualCanBus
from vhost_device_can.protocol import (
    F_CAN_CLASSIC,
    F_CAN_FD,
    F_RTR_FRAMES,
    HEADER,
    MSG_TX,
    QUEUE_SIZE,
    Frame,
    Result,
    encode_tx,
)
from vhost_user_core import STANDARD_FEATURES
from vhost_user_core.testing.harness import connected_frontend

ALL = STANDARD_FEATURES | F_CAN_CLASSIC | F_CAN_FD | F_RTR_FRAMES
GOOD = Frame(0x10, b"ok")


@contextmanager
def negotiated(tmp_path: Path, bus: VirtualCanBus, features: int) -> Iterator[Driver]:
    with connected_frontend(lambda: CanBackend(bus), tmp_path / "can.sock") as frontend:
        frontend.start_device(3, QUEUE_SIZE, features=features)
        driver = Driver(frontend)
        assert driver.start() == Result.OK
        yield driver


def header(length: int, flags: int = 0, can_id: int = 0x10, **fields: int) -> bytes:
    return HEADER.pack(
        fields.get("msg_type", MSG_TX),
        length,
        fields.get("dlc", 0),
        fields.get("padding", 0),
        fields.get("xl", 0),
        flags,
        can_id,
    )


def refused(driver: Driver, peer: can.BusABC, request: bytes) -> None:
    assert driver.send_raw(request) == Result.NOT_OK
    assert driver.send(GOOD) == Result.OK
    message = peer.recv(2)
    assert message is not None and message.arbitration_id == GOOD.can_id  # only the good one
    assert peer.recv(0) is None


INVALID = {
    "unknown-flag": header(1, 0x0001) + b"x",
    "unknown-high-flag": header(1, 1 << 31) + b"x",
    "wrong-msg-type": header(1, msg_type=0x0101) + b"x",
    "reserved-dlc-set": header(8, dlc=9) + bytes(8),
    "padding-set": header(1, padding=1) + b"x",
    "xl-priority-set": header(1, xl=1) + b"x",
    "classic-length-9": header(9) + bytes(9),
    "fd-length-13": header(13, 0x4000) + bytes(13),
    "fd-length-65": header(65, 0x4000) + bytes(65),
    "fd-with-rtr": header(0, 0x4000 | 0x2000),
    "rtr-length-9": header(9, 0x2000),
    "standard-id-over-11-bits": header(1, can_id=0x800) + b"x",
    "extended-id-over-29-bits": header(1, 0x8000, can_id=0x20000000) + b"x",
    "length-over-data": header(8) + bytes(4),
    "length-under-data": header(2) + bytes(4),
    "short-header": header(0)[:15],
    "empty": b"",
}


@pytest.mark.parametrize("request_bytes", INVALID.values(), ids=INVALID.keys())
def test_invalid_frames_are_not_ok(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC, request_bytes: bytes
) -> None:
    with negotiated(tmp_path, host_bus, ALL) as driver:
        refused(driver, peer, request_bytes)


@pytest.mark.parametrize(
    "features, frame",
    [
        (ALL & ~F_CAN_FD, Frame(0x10, bytes(12), fd=True)),
        (ALL & ~F_CAN_FD, Frame(0x10, bytes(8), fd=True)),  # an FD frame of 8 bytes is still FD
        (ALL & ~F_RTR_FRAMES, Frame(0x10, rtr=True, rtr_length=1)),
    ],
    ids=["fd-not-negotiated", "short-fd-not-negotiated", "rtr-not-negotiated"],
)
def test_frames_outside_the_negotiated_features_are_not_ok(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC, features: int, frame: Frame
) -> None:
    with negotiated(tmp_path, host_bus, features) as driver:
        refused(driver, peer, encode_tx(frame))


def test_classic_frames_need_can_classic(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC
) -> None:
    with negotiated(tmp_path, host_bus, ALL & ~F_CAN_CLASSIC & ~F_RTR_FRAMES) as driver:
        assert driver.send(GOOD) == Result.NOT_OK
        assert driver.send(Frame(0x10, b"ok", fd=True)) == Result.OK
        message = peer.recv(2)
        assert message is not None and message.is_fd


@pytest.mark.parametrize("length", [0, 1, 7, 8, 12, 16, 20, 24, 32, 48, 64])
def test_every_fd_length_goes(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC, length: int
) -> None:
    with negotiated(tmp_path, host_bus, ALL) as driver:
        assert driver.send(Frame(0x10, bytes(range(length)), fd=True)) == Result.OK
        message = peer.recv(2)
        assert message is not None and bytes(message.data) == bytes(range(length))


def test_a_remote_frame_may_carry_its_length_in_data_bytes_too(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC
) -> None:
    with negotiated(tmp_path, host_bus, ALL) as driver:
        assert driver.send_raw(header(2, 0x2000) + b"\0\0") == Result.OK
        message = peer.recv(2)
        assert message is not None and message.is_remote_frame and message.dlc == 2


@pytest.mark.parametrize(
    "features, message",
    [
        (ALL & ~F_CAN_FD, can.Message(arbitration_id=1, data=bytes(12), is_fd=True)),
        (ALL & ~F_RTR_FRAMES, can.Message(arbitration_id=1, is_remote_frame=True, dlc=1)),
        (
            ALL & ~F_CAN_CLASSIC & ~F_RTR_FRAMES,
            can.Message(arbitration_id=1, data=b"c", is_extended_id=False),
        ),
        (ALL, can.Message(arbitration_id=1, is_error_frame=True, is_extended_id=False)),
    ],
    ids=["fd", "rtr", "classic", "error-frame"],
)
def test_frames_from_the_bus_the_guest_cannot_take_are_dropped(
    tmp_path: Path, host_bus: VirtualCanBus, peer: can.BusABC, features: int, message: can.Message
) -> None:
    with negotiated(tmp_path, host_bus, features) as driver:
        posted = driver.post_rx()
        message.is_extended_id = False
        peer.send(message)
        fd = not features & F_CAN_CLASSIC
        peer.send(can.Message(arbitration_id=2, data=b"ok", is_extended_id=False, is_fd=fd))
        assert driver.receive(posted) == [Frame(2, b"ok", fd=fd)]


def test_the_header_is_the_drafts_16_bytes() -> None:
    assert HEADER.size == 16
    assert (
        encode_tx(Frame(0x123, b"ab", extended=True))
        == struct.pack("<HHBBHII", 1, 2, 0, 0, 0, 0x8000, 0x123) + b"ab"
    )
