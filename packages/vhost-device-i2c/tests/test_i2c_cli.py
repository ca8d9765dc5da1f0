"""The command: --device-list into the config, bus lookup by sysfs name, one-line
errors, --version, and the installed daemon end to end on the sim bus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from i2c_driver import OK, Driver, r, w

import vhost_device_i2c
from vhost_device_i2c.args import BusSpec, parse_device_list
from vhost_device_i2c.errors import ConfigError, DeviceError, TransferError
from vhost_device_i2c.host import SimBus, find_adapter, open_buses
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_i2c.main"]


def test_device_list_forms() -> None:
    assert parse_device_list("sim:32:80") == (BusSpec("sim", (32, 80)),)
    assert parse_device_list("1:0x50,SMBus stub driver:7") == (
        BusSpec("1", (0x50,)),
        BusSpec("SMBus stub driver", (7,)),
    )
    assert parse_device_list("0:0:127") == (BusSpec("0", (0, 127)),)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("sim", "is not <bus>:<addr>"),
        (":32", "is not <bus>:<addr>"),
        ("sim:128", "address 128 is over 127"),
        ("sim:0x80", "address 0x80 is over 127"),
        ("sim:abc", "'abc' is not an address"),
        ("sim:", "'' is not an address"),
        ("sim:-1", "address -1 is over 127"),
        ("sim:32:32", "address 32 is listed twice"),
        ("sim:32,1:0x20", "address 32 is listed twice"),
        ("1:32,1:33", "bus '1' is listed twice"),
    ],
)
def test_bad_device_lists(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_device_list(text)


def fake_sysfs(tmp_path: Path, names: dict[int, str]) -> Path:
    for number, name in names.items():
        entry = tmp_path / f"bus/i2c/devices/i2c-{number}"
        entry.mkdir(parents=True)
        (entry / "name").write_text(name + "\n")
    (tmp_path / "bus/i2c/devices/0-0050").mkdir(parents=True)  # a client, not an adapter
    return tmp_path


def test_adapter_by_sysfs_name(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, {0: "i915 gmbus dpc", 3: "SMBus stub driver"})
    assert find_adapter("SMBus stub driver", sysfs) == 3
    assert find_adapter("nothing", sysfs) is None


def test_an_ambiguous_adapter_name_is_an_error(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, {0: "twin", 4: "twin"})
    with pytest.raises(ConfigError, match="'twin' is ambiguous: /dev/i2c-0, /dev/i2c-4"):
        find_adapter("twin", sysfs)


def test_sim_is_simulated_unless_an_adapter_has_that_name(tmp_path: Path) -> None:
    buses = open_buses_for("sim:32:80", fake_sysfs(tmp_path, {}))
    assert isinstance(buses.by_addr[32], SimBus) and buses.by_addr[32] is buses.by_addr[80]
    with pytest.raises(ConfigError, match="no I2C adapter is named 'simx'"):
        open_buses_for("simx:32", tmp_path)


def open_buses_for(text: str, sysfs: Path):  # type: ignore[no-untyped-def]
    from vhost_device_i2c.args import I2cConfig

    return open_buses(I2cConfig(parse_device_list(text)), sysfs)


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-i2c {vhost_device_i2c.__version__}\n"


@pytest.mark.parametrize(
    ("device_list", "message"),
    [
        ("sim:200", "error: --device-list: address 200 is over 127\n"),
        ("nosuch:3", "error: --device-list: no I2C adapter is named 'nosuch'\n"),
        ("97:3", "error: cannot open /dev/i2c-97: No such file or directory\n"),
    ],
)
def test_a_bad_list_is_one_line_and_status_1(
    tmp_path: Path, device_list: str, message: str
) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "-l", device_list]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (1, message)
    assert not (tmp_path / "t.sock0").exists()  # checked before any socket


def test_daemon_serves_the_sim_bus_on_each_socket(tmp_path: Path) -> None:
    sockets = [tmp_path / "t.sock0", tmp_path / "t.sock1"]
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "-c", "2", "-l", "sim:32:0x50"]
    with daemon_process(argv, log=tmp_path / "log", sockets=sockets):
        with Frontend.connect(sockets[0]) as frontend:
            frontend.start_device(1, 128)
            driver = Driver(frontend)
            assert driver.statuses(w(0x50, 0, 0xC0, 0xFF, 0xEE)) == [OK]
        with Frontend.connect(sockets[1]) as frontend:  # the same EEPROMs, one process
            frontend.start_device(1, 128)
            driver = Driver(frontend)
            assert driver.transfer(w(0x50, 0), r(0x50, 3))[1] == (OK, b"\xc0\xff\xee")


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_user_core import BackendError, VhostUserError

    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, DeviceError)
    assert issubclass(TransferError, BackendError) and issubclass(TransferError, DeviceError)
    assert TransferError("nak", 0x50).addr == 0x50
