"""Fixtures: a backend of fake sensors behind the core's frontend, and the driver."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from scmi_driver import ScmiDriver

from vhost_device_scmi.device import ScmiBackend
from vhost_device_scmi.sensors import FakeAccelerometer, Sensor
from vhost_user_core.testing.harness import connected_frontend

Connect = Callable[[Callable[[], Sequence[Sensor]]], ScmiDriver]


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Connect]:
    """connect(open_sensors) → a started driver; the daemon ends with the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def _connect(open_sensors: Callable[[], Sequence[Sensor]]) -> ScmiDriver:
            frontend = stack.enter_context(
                connected_frontend(lambda: ScmiBackend(open_sensors), tmp_path / "scmi.sock")
            )
            return ScmiDriver(frontend)

        yield _connect


@pytest.fixture
def scmi(connect: Connect) -> ScmiDriver:
    """Two fake accelerometers (ids 0 and 1) updating every 50 ms once asked."""
    return connect(lambda: [FakeAccelerometer("acc0", 0.05), FakeAccelerometer("acc1", 0.05)])
