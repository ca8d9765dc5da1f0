"""The host adapter (`GpiodChip`, libgpiod v2 through the gpiod package) against the
real kernel: a gpio-sim chip inside a hostkernel guest, its lines pulled through
gpio-sim's sysfs. First the adapter alone, then the daemon serving that chip
(`-l N`) to the core's frontend, which plays the guest driver."""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gpiod
import pytest
from gpio_driver import GpioDriver

from vhost_device_gpio.host import Edges, GpiodChip
from vhost_device_gpio.protocol import Direction
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

pytestmark = pytest.mark.hostkernel("gpio-sim")

CONFIGFS = Path("/sys/kernel/config/gpio-sim")
LINES = 8
OK, VALID = b"\x00\x00", b"\x01"
SET_DIR, GET_VALUE, SET_VALUE, IRQ_TYPE = 3, 4, 5, 6


@dataclass
class SimChip:
    dev: Path  # /dev/gpiochipN
    sysfs: Path  # /sys/bus/gpio/devices/gpiochipN

    def pull(self, line: int, up: bool) -> None:
        (self.sysfs / f"sim_gpio{line}" / "pull").write_text("pull-up" if up else "pull-down")

    def level(self, line: int) -> int:
        return int((self.sysfs / f"sim_gpio{line}" / "value").read_text())

    def consumers(self) -> dict[int, str]:
        with gpiod.Chip(str(self.dev)) as chip:
            infos = [chip.get_line_info(i) for i in range(LINES)]
        return {info.offset: info.consumer or "" for info in infos if info.used}


@pytest.fixture
def sim() -> Iterator[SimChip]:
    """A live gpio-sim chip of 8 lines, line 0 named; taken down again afterwards."""
    chip = CONFIGFS / f"vhost{os.getpid()}"
    bank, named = chip / "bank0", chip / "bank0" / "line0"
    for directory in (chip, bank, named):
        directory.mkdir()
    (bank / "num_lines").write_text(str(LINES))
    (named / "name").write_text("sim-zero")
    (chip / "live").write_text("1")
    name = (bank / "chip_name").read_text().strip()
    try:
        yield SimChip(Path("/dev") / name, Path("/sys/bus/gpio/devices") / name)
    finally:
        (chip / "live").write_text("0")
        for directory in (named, bank, chip):
            directory.rmdir()


def _readable(fd: int, timeout: float = 5.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_adapter_names_directions_and_values(sim: SimChip) -> None:
    chip = GpiodChip(sim.dev)
    try:
        assert chip.num_lines == LINES
        assert chip.line_names()[:2] == ["sim-zero", ""]
        chip.set_value(3, 1)  # before the direction, as Linux's direction_output does
        chip.set_direction(3, Direction.OUT)
        assert (chip.direction(3), sim.level(3), chip.value(3)) == (Direction.OUT, 1, 1)
        chip.set_value(3, 0)
        assert sim.level(3) == 0
        chip.set_direction(3, Direction.IN)  # reconfigured in place: still one request
        assert sim.consumers() == {3: "vhost-device-gpio"}
        sim.pull(3, up=True)
        assert (chip.direction(3), chip.value(3)) == (Direction.IN, 1)
        chip.set_direction(3, Direction.NONE)
        assert sim.consumers() == {}
        sim.pull(4, up=True)
        assert chip.value(4) == 1  # a passing look at a line nobody holds
        assert sim.consumers() == {}
    finally:
        chip.close()


def test_adapter_edges(sim: SimChip) -> None:
    chip = GpiodChip(sim.dev)
    try:
        fd = chip.watch(5, Edges.BOTH)
        assert fd is not None
        sim.pull(5, up=True)
        assert _readable(fd)
        assert chip.read_edges(5) == [True]
        sim.pull(5, up=False)
        assert _readable(fd)
        assert chip.read_edges(5) == [False]
        assert chip.watch(5, Edges.RISING) == fd  # the same request, reconfigured
        sim.pull(5, up=True)
        sim.pull(5, up=False)
        assert _readable(fd)
        assert chip.read_edges(5) == [True]
        assert sim.consumers() == {5: "vhost-device-gpio"}
        chip.release_all()
        assert sim.consumers() == {}
    finally:
        chip.close()


def test_daemon_serves_the_sim_chip(sim: SimChip, tmp_path: Path) -> None:
    number = sim.dev.name.removeprefix("gpiochip")
    socket = tmp_path / "g.sock0"
    argv = [sys.executable, "-m", "vhost_device_gpio.main", "-s", str(tmp_path / "g.sock")]
    with daemon_process([*argv, "-l", number], log=tmp_path / "log", sockets=[socket]):
        with Frontend.connect(socket) as frontend:
            gpio = GpioDriver(frontend)
            names = b"sim-zero\0" + b"\0" * (LINES - 1)
            assert gpio.request(1, 0, room=1 + len(names)) == b"\x00" + names
            assert gpio.request(SET_VALUE, 2, 1) == OK
            assert gpio.request(SET_DIR, 2, 1) == OK
            assert sim.level(2) == 1
            assert gpio.request(IRQ_TYPE, 5, 1) == OK  # rising edge
            gpio.arm(5)
            assert gpio.quiet()
            sim.pull(5, up=True)
            assert gpio.fired() == [(5, 1, VALID)]
            sim.pull(6, up=True)
            assert gpio.request(IRQ_TYPE, 6, 4) == OK  # level high, already high
            gpio.arm(6)
            assert gpio.fired() == [(6, 1, VALID)]
            assert gpio.request(GET_VALUE, 6) == b"\x00\x01"
            assert sorted(sim.consumers()) == [2, 5, 6]
        deadline = time.monotonic() + 5
        while sim.consumers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.consumers() == {}  # the disconnect released every line
