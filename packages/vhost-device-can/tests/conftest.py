"""Fixtures: a daemon thread serving one CanBackend on a virtual bus, the driver on its
frontend, and a python-can peer node on the same virtual bus."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import can
import pytest
from can_driver import Driver

from vhost_device_can.device import CanBackend
from vhost_device_can.host import VirtualCanBus
from vhost_device_can.protocol import QUEUE_SIZE
from vhost_user_core.testing.harness import connected_frontend

_names = itertools.count()


@pytest.fixture
def bus_name() -> str:
    return f"test-bus-{next(_names)}"


@pytest.fixture
def peer(bus_name: str) -> Iterator[can.BusABC]:
    node = can.Bus(interface="virtual", channel=bus_name)
    yield node
    node.shutdown()


@pytest.fixture
def host_bus(bus_name: str, peer: can.BusABC) -> Iterator[VirtualCanBus]:
    bus = VirtualCanBus(bus_name)
    yield bus
    bus.close()


@pytest.fixture
def driver(tmp_path: Path, host_bus: VirtualCanBus) -> Iterator[Driver]:
    """A driver that negotiated everything offered; the controller not yet started."""
    with connected_frontend(lambda: CanBackend(host_bus), tmp_path / "can.sock") as frontend:
        frontend.start_device(3, QUEUE_SIZE)
        yield Driver(frontend)
