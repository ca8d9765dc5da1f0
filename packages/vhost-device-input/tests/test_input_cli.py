"""The command: flags into the config, a one-line error for every bad input, --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_input
from vhost_device_input.args import InputConfig, build_parser
from vhost_device_input.errors import ConfigError, DeviceError, HostDeviceError
from vhost_device_input.host import parse_event_line

DAEMON = [sys.executable, "-m", "vhost_device_input.main"]


def _config(*flags: str) -> InputConfig:
    return InputConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    config = _config("-e", "/dev/input/event3,sim:mouse", "--grab")
    assert config == InputConfig(
        ("/dev/input/event3", "sim:mouse"), ("/tmp/x.sock0", "/tmp/x.sock1"), True
    )
    assert _config("--event-list", "sim:tablet").grab is False


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("sim:joystick", "'sim:joystick' is not one of sim:keyboard, sim:mouse, sim:tablet"),
        ("/dev/input/event0,,sim:mouse", "has an empty item"),
        ("/dev/input/event0,/dev/input/event0", "'/dev/input/event0' is listed twice"),
    ],
)
def test_bad_event_lists(items: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config("-e", items)


def _run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), *flags]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_a_missing_device_is_one_line_and_status_1(tmp_path: Path) -> None:
    run = _run(tmp_path, "-e", f"sim:mouse,{tmp_path}/event9")
    assert run.returncode == 1
    assert run.stderr == f"error: cannot open {tmp_path}/event9: No such file or directory\n"
    assert not list(tmp_path.iterdir())  # checked before any socket (sim's included)


def test_a_file_that_is_no_input_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    run = _run(tmp_path, "-e", str(tmp_path / "plain"))
    assert run.returncode == 1
    assert run.stderr == f"error: cannot use {tmp_path}/plain: not an evdev input device\n"


def test_event_list_is_required(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 2 and "--event-list" in run.stderr


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-input {vhost_device_input.__version__}\n"


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ("EV_KEY KEY_A 1", (1, 30, 1)),
        ("EV_KEY BTN_LEFT 0", (1, 0x110, 0)),
        ("EV_ABS ABS_X -5", (3, 0, -5)),
        ("3 0x01 32767", (3, 1, 32767)),
        ("EV_SYN SYN_REPORT 0", (0, 0, 0)),
    ],
)
def test_event_lines(line: str, event: tuple[int, int, int]) -> None:
    assert parse_event_line(line) == event


@pytest.mark.parametrize(
    "line",
    [
        "EV_KEY KEY_A",
        "EV_KEY ABS_X 1",
        "EV_BOGUS 1 1",
        "EV_KEY KEY_A x",
        "1 70000 0",
        "1 1 4294967296",
        "EV_KEY KEY_A 1 2",
    ],
)
def test_bad_event_lines(line: str) -> None:
    with pytest.raises(ValueError):
        parse_event_line(line)


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_user_core import BackendError, VhostUserError

    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(HostDeviceError, BackendError) and issubclass(HostDeviceError, DeviceError)
