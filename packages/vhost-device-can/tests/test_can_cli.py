"""The command: flags into the config, one clear line for each bad input, --version,
and the installed daemon end to end (two sockets on one virtual bus)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from can_driver import exchange_between

import vhost_device_can
from vhost_device_can.args import CanConfig, build_parser
from vhost_device_can.errors import BusError, ConfigError, DeviceError, HostError
from vhost_device_can.host import SocketCanBus
from vhost_user_core import BackendError, VhostUserError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_can.main"]


def _config(*flags: str) -> CanConfig:
    return CanConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config("-d", "vcan0") == CanConfig(("vcan0",))
    assert _config("-c", "2", "-d", "vcan0  can1") == CanConfig(("vcan0", "can1"))
    assert _config("-c", "2", "-d", "virtual:a virtual:a").devices == ("virtual:a",) * 2
    assert _config("-c", "2", "-d", "vcan0 vcan0").devices == ("vcan0", "vcan0")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["-d", "vcan0 vcan1"], "names 2 interface(s) for 1 socket(s)"),
        (["-c", "3", "-d", "vcan0 vcan1"], "names 2 interface(s) for 3 socket(s)"),
        (["-d", ""], "names 0 interface(s) for 1 socket(s)"),
        (["-d", "virtual:"], "virtual: needs a bus name"),
        (["-d", "../x"], "is not a network interface name"),
        (["-d", "a-name-too-long-for-linux"], "is not a network interface name"),
    ],
)
def test_bad_devices_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(*flags)


def test_can_devices_is_required() -> None:
    run = subprocess.run([*DAEMON, "-s", "/tmp/x.sock"], capture_output=True, text=True)
    assert run.returncode == 2 and "--can-devices" in run.stderr


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-can {vhost_device_can.__version__}\n"


def test_a_count_mismatch_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "-c", "2", "-d", "vcan0"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == "error: --can-devices names 1 interface(s) for 2 socket(s)\n"
    assert not (tmp_path / "t.sock0").exists()  # checked before any socket


def test_a_missing_interface_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "-d", "nosuchcan0"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (1, "error: no network interface 'nosuchcan0'\n")
    assert not (tmp_path / "t.sock0").exists()


def test_an_interface_that_is_not_can_is_refused() -> None:
    with pytest.raises(HostError, match="lo is not a CAN interface"):
        SocketCanBus("lo")


def test_two_sockets_on_one_virtual_bus_exchange_frames(tmp_path: Path) -> None:
    """Two guests of one daemon on `virtual:wire`: what one sends the other receives."""
    base = tmp_path / "can.sock"
    argv = [*DAEMON, "-s", str(base), "-c", "2", "-d", "virtual:wire virtual:wire"]
    sockets = [tmp_path / "can.sock0", tmp_path / "can.sock1"]
    with (
        daemon_process(argv, log=tmp_path / "log", sockets=sockets),
        Frontend.connect(sockets[0]) as one,
        Frontend.connect(sockets[1]) as two,
    ):
        exchange_between(one, two, fd_payload=12)


def test_errors_are_rooted_in_the_core_tree() -> None:
    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(HostError, DeviceError) and issubclass(ConfigError, DeviceError)
    assert issubclass(BusError, BackendError) and issubclass(BusError, DeviceError)
