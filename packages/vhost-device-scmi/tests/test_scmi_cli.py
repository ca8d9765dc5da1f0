"""The command: -d into device specs, --help-devices, one-line errors, the daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_scmi
from vhost_device_scmi.args import KINDS, DeviceSpec, ScmiConfig, build_parser
from vhost_device_scmi.errors import ConfigError, DeviceError, SensorError

DAEMON = [sys.executable, "-m", "vhost_device_scmi.main"]


def _config(*flags: str) -> ScmiConfig:
    return ScmiConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_devices_in_order() -> None:
    assert _config("-d", "fake", "-d", "iio,path=/p,channel=in_temp,name=t").devices == (
        DeviceSpec("fake"),
        DeviceSpec("iio", {"path": "/p", "channel": "in_temp", "name": "t"}),
    )


def test_no_device_is_allowed() -> None:
    assert _config().devices == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gyro", "unknown device kind 'gyro'"),
        ("fake,colour=red", "fake has no property 'colour'"),
        ("fake,name", "'name' is not PROPERTY=VALUE"),
        ("fake,=x", "'=x' is not PROPERTY=VALUE"),
        ("fake,name=a,name=b", "name given twice"),
        ("fake,name=sixteen-bytes-xx", "name must be 1 to 15 bytes"),
        ("fake,name=", "name must be 1 to 15 bytes"),
        ("iio,path=/p", "iio needs channel"),
        ("iio", "iio needs path, channel"),
    ],
)
def test_bad_device_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config("-d", spec)


def test_help_devices_lists_every_kind_and_property() -> None:
    run = subprocess.run([*DAEMON, "--help-devices"], capture_output=True, text=True, check=True)
    for kind, (_, props) in KINDS.items():
        assert f"- {kind}: " in run.stdout
        for prop in props:
            assert f"    {prop}" in run.stdout
    assert "path (required)" in run.stdout and "channel (required)" in run.stdout


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-scmi {vhost_device_scmi.__version__}\n"


def test_socket_path_is_required() -> None:
    run = subprocess.run([*DAEMON, "-d", "fake"], capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "--socket-path" in run.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fake,size=3", "error: -d fake,size=3: fake has no property 'size' (see --help-devices)"),
        (
            "iio,path=/nonexistent/iio:device9,channel=in_accel",
            "error: iio path /nonexistent/iio:device9: no such IIO device directory",
        ),
    ],
)
def test_a_bad_device_is_one_line_and_status_1(tmp_path: Path, spec: str, message: str) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "-d", spec]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (run.returncode, run.stderr) == (1, message + "\n")
    assert not (tmp_path / "t.sock").exists()  # checked before any socket


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_user_core import BackendError, VhostUserError

    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(SensorError, BackendError) and issubclass(SensorError, DeviceError)
