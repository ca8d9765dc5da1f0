"""The command: flags into the config, one-line errors, --version, and the installed
daemon end to end with mock chips driven through --mock-control."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gpio_driver import GpioDriver

import vhost_device_gpio
from vhost_device_gpio.args import ChipSpec, GpioConfig, build_parser
from vhost_device_gpio.errors import ConfigError, GpioError, LineError
from vhost_device_gpio.host import MockChip
from vhost_device_gpio.mockctl import execute
from vhost_user_core import BackendError, VhostUserError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process, wait_for_socket

DAEMON = [sys.executable, "-m", "vhost_device_gpio.main"]


def _config(*flags: str) -> GpioConfig:
    return GpioConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config("-l", "s8") == GpioConfig((ChipSpec(mock_lines=8),))
    assert _config("-c", "3", "-l", "0:s4:2") == GpioConfig(
        (ChipSpec(host=0), ChipSpec(mock_lines=4), ChipSpec(host=2))
    )
    assert _config("-l", "s2", "--mock-control", "/tmp/m").mock_control == Path("/tmp/m")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-l", "s8:s8"], "2 chip\\(s\\) but --socket-count is 1"),
        (["-c", "2", "-l", "s8"], "1 chip\\(s\\) but --socket-count is 2"),
        (["-l", "s0"], "sN needs N lines"),
        (["-l", "sx"], "sN needs N lines"),
        (["-l", "gpiochip0"], "expected N"),
        (["-l", ""], "expected N"),
        (["-c", "2", "-l", "1:1"], "listed twice"),
        (["-l", "0", "--mock-control", "/tmp/m"], "has none"),
    ],
)
def test_bad_device_lists(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(*flags)


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-gpio {vhost_device_gpio.__version__}\n"


def test_a_bad_config_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "g.sock"), "-l", "s4:s4"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == (
        "error: --device-list has 2 chip(s) but --socket-count is 1: exactly one chip per socket\n"
    )
    assert not (tmp_path / "g.sock0").exists()  # checked before any socket


def test_a_missing_host_chip_is_one_line(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "g.sock"), "-l", "999"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == "error: cannot open /dev/gpiochip999: No such file or directory\n"


def test_mock_control_commands() -> None:
    chips = [MockChip(4)]
    assert execute(chips, "SET 0 2 1\n") == "OK"
    assert chips[0].value(2) == 1
    assert execute(chips, "set 0 2 0") == "OK"
    assert chips[0].value(2) == 0
    assert execute(chips, "") == "ERR empty command"
    assert execute(chips, "GET 0 1").startswith("ERR expected: SET")
    assert execute(chips, "SET 1 0 1") == "ERR chip index 1: there are 1 chip(s), 0..0"
    assert execute(chips, "SET 0 4 1") == "ERR mock has lines 0..3"
    assert execute(chips, "SET 0 1 2") == "ERR level 2: 0 or 1"
    assert execute(chips, "SET 0 -1 1") == "ERR line -1: not a number"


def test_mock_control_takes_ascii_digits_only() -> None:
    # Found by fuzzing (fuzz/targets/gpio.py): '²' passed str.isdigit() and int() raised,
    # which ended the control client's thread without an answer.
    chips = [MockChip(4)]
    assert execute(chips, "SET 0 \u00b2 1") == "ERR line \u00b2: not a number"
    assert execute(chips, "SET \u00b2 0 1").startswith("ERR chip index \u00b2")
    assert execute(chips, "SET 0 \u0663 1") == "ERR line \u0663: not a number"  # not line 3
    assert chips[0].value(3) == 0


def _control(path: Path, *commands: str) -> list[str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        stream = sock.makefile("rw")
        answers = []
        for command in commands:
            stream.write(command + "\n")
            stream.flush()
            answers.append(stream.readline().rstrip("\n"))
        return answers


def test_daemon_two_mock_chips_driven_from_outside(tmp_path: Path) -> None:
    control = tmp_path / "ctl"
    sockets = [tmp_path / "g.sock0", tmp_path / "g.sock1"]
    argv = [*DAEMON, "-s", str(tmp_path / "g.sock"), "-c", "2", "-l", "s4:s8"]
    with daemon_process(
        [*argv, "--mock-control", str(control)], log=tmp_path / "log", sockets=sockets
    ):
        wait_for_socket(control)
        with Frontend.connect(sockets[1]) as frontend:
            gpio = GpioDriver(frontend)
            assert frontend.get_config(0, 2) == b"\x08\x00"  # socket 1 has chip 1: 8 lines
            assert gpio.request(6, 7, 1) == b"\x00\x00"  # line 7: rising edge
            gpio.arm(7)
            assert _control(control, "SET 1 7 1", "SET 1 8 1") == ["OK", "ERR mock1 has lines 0..7"]
            assert gpio.fired() == [(7, 1, b"\x01")]
            assert gpio.request(4, 7) == b"\x00\x01"
        with Frontend.connect(sockets[0]) as frontend:
            frontend.negotiate()
            assert frontend.get_config(0, 2) == b"\x04\x00"
    log = (tmp_path / "log").read_text()
    assert "mock1 line 7: input driven to 1" in log


def test_errors_are_rooted_in_the_core_tree() -> None:
    assert issubclass(GpioError, VhostUserError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(LineError, BackendError) and issubclass(LineError, GpioError)
    error = LineError("busy", "/dev/gpiochip0", 3)
    assert (error.chip, error.line) == ("/dev/gpiochip0", 3)
