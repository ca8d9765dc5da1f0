"""The SocketCAN adapter against the real kernel: inside a hostkernel guest, `vcan`
interfaces made with pyroute2 (a classic one named vcan0, an FD-MTU one named
otherwise), a python-can socketcan peer on the same interface checking frames both
ways, a downed interface for BUSOFF, and two daemon sockets on one vcan."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import can
import pytest
from can_driver import Driver, exchange_between
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from vhost_device_can.device import CanBackend
from vhost_device_can.host import CAN_MTU, CANFD_MTU, SocketCanBus
from vhost_device_can.protocol import F_CAN_FD, QUEUE_SIZE, STATUS_BUSOFF, Frame, Result
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import connected_frontend, daemon_process

pytestmark = pytest.mark.hostkernel("vcan", "can-raw")


@contextmanager
def vcan(name: str, mtu: int) -> Iterator[str]:
    with IPRoute() as ip:
        ip.link("add", ifname=name, kind="vcan")
        (index,) = ip.link_lookup(ifname=name)
        try:
            ip.link("set", index=index, mtu=mtu)
            ip.link("set", index=index, state="up")
            yield name
        finally:
            ip.link("del", index=index)


def set_up(name: str, up: bool) -> None:
    with IPRoute() as ip:
        (index,) = ip.link_lookup(ifname=name)
        ip.link("set", index=index, state="up" if up else "down")


@contextmanager
def served(tmp_path: Path, name: str) -> Iterator[tuple[Driver, can.BusABC, CanBackend]]:
    """The device on `name` (in this process), started, and a peer on `name`."""
    bus = SocketCanBus(name)
    peer = can.Bus(interface="socketcan", channel=name, fd=bus.fd_capable)
    backends: list[CanBackend] = []

    def factory() -> CanBackend:
        backends.append(CanBackend(bus))
        return backends[-1]

    try:
        with connected_frontend(factory, tmp_path / "can.sock") as frontend:
            frontend.start_device(3, QUEUE_SIZE)
            driver = Driver(frontend)
            assert driver.start() == Result.OK
            yield driver, peer, backends[0]
    finally:
        peer.shutdown()
        bus.close()


def test_classic_vcan_named_vcan0_offers_no_fd(tmp_path: Path) -> None:
    with vcan("vcan0", CAN_MTU), served(tmp_path, "vcan0") as (driver, peer, backend):
        assert not backend.features & F_CAN_FD and not backend.negotiated & F_CAN_FD
        assert driver.send(Frame(0x123, bytes(12), fd=True)) == Result.NOT_OK
        assert peer.recv(0.5) is None


def test_classic_frames_both_ways_on_vcan(tmp_path: Path) -> None:
    with vcan("vcan0", CAN_MTU), served(tmp_path, "vcan0") as (driver, peer, _):
        for frame in [
            Frame(0x123, b"\x01\x02"),
            Frame(0x1ABCDEF, b"12345678", extended=True),
            Frame(0x7FF, rtr=True, rtr_length=3),
        ]:
            assert driver.send(frame) == Result.OK
            message = peer.recv(5)
            assert message is not None
            got = (message.arbitration_id, message.is_extended_id, message.is_remote_frame)
            assert got == (frame.can_id, frame.extended, frame.rtr)
            assert message.dlc == frame.length
            if not frame.rtr:
                assert bytes(message.data) == frame.data
        posted = driver.post_rx(3)
        peer.send(can.Message(arbitration_id=0x10, data=b"abc", is_extended_id=False))
        peer.send(can.Message(arbitration_id=0x10000, data=b"", is_extended_id=True))
        peer.send(
            can.Message(arbitration_id=0x20, is_remote_frame=True, dlc=5, is_extended_id=False)
        )
        assert driver.receive(posted, 3) == [
            Frame(0x10, b"abc"),
            Frame(0x10000, b"", extended=True),
            Frame(0x20, rtr=True, rtr_length=5),
        ]


def test_fd_frames_both_ways_on_an_fd_mtu_vcan(tmp_path: Path) -> None:
    with vcan("bus7", CANFD_MTU), served(tmp_path, "bus7") as (driver, peer, backend):
        assert backend.negotiated & F_CAN_FD
        assert driver.send(Frame(0x42, bytes(range(64)), fd=True)) == Result.OK
        message = peer.recv(5)
        assert message is not None and message.is_fd and bytes(message.data) == bytes(range(64))
        assert driver.send(Frame(0x43, b"short")) == Result.OK  # classic still goes
        message = peer.recv(5)
        assert message is not None and not message.is_fd and bytes(message.data) == b"short"
        posted = driver.post_rx(2)
        peer.send(
            can.Message(arbitration_id=0x99, data=bytes(20), is_fd=True, is_extended_id=False)
        )
        peer.send(can.Message(arbitration_id=0x9A, data=b"c", is_extended_id=False))
        assert driver.receive(posted, 2) == [Frame(0x99, bytes(20), fd=True), Frame(0x9A, b"c")]


def test_a_downed_interface_sets_busoff_until_start(tmp_path: Path) -> None:
    with vcan("vcan0", CAN_MTU), served(tmp_path, "vcan0") as (driver, peer, _):
        set_up("vcan0", False)
        assert driver.send(Frame(1, b"down")) == Result.NOT_OK  # the kernel: ENETDOWN
        assert driver.status() == STATUS_BUSOFF
        set_up("vcan0", True)
        with pytest.raises(can.CanOperationError, match="Network is down"):
            peer.recv(1)  # the peer's socket was told too (the daemon's logs it, and goes on)
        assert driver.start() == Result.OK
        assert driver.status() == 0
        assert driver.send(Frame(2, b"up")) == Result.OK
        message = peer.recv(5)
        assert message is not None and bytes(message.data) == b"up"


def test_two_daemon_sockets_on_one_vcan_exchange_frames(tmp_path: Path) -> None:
    base = tmp_path / "can.sock"
    argv = [sys.executable, "-m", "vhost_device_can.main", "-s", str(base)]
    argv += ["-c", "2", "-d", "canfd0 canfd0"]
    sockets = [tmp_path / "can.sock0", tmp_path / "can.sock1"]
    # Python's first start in the guest reads every module over 9p under TCG.
    subprocess.run([sys.executable, "-c", "import vhost_device_can.main"], check=True)
    with (
        vcan("canfd0", CANFD_MTU),
        daemon_process(argv, log=tmp_path / "log", sockets=sockets),
        Frontend.connect(sockets[0]) as one,
        Frontend.connect(sockets[1]) as two,
    ):
        exchange_between(one, two, fd_payload=32)
