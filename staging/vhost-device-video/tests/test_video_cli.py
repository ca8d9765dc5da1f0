"""The command: flags into the config, --version, one-line errors, and the installed
daemon end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_video
from vhost_device_video.args import VideoConfig, build_parser
from vhost_device_video.errors import ConfigError, DeviceError, V4l2Error
from vhost_user_core import BackendError, VhostUserError

DAEMON = [sys.executable, "-m", "vhost_device_video.main"]


def _config(*flags: str) -> VideoConfig:
    return VideoConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config("-b", "null") == VideoConfig("null", Path("/dev/video0"))
    assert _config("--backend", "v4l2-decoder", "-d", "/dev/video3") == VideoConfig(
        "v4l2-decoder", Path("/dev/video3")
    )


@pytest.mark.parametrize("flags", [[], ["-b", "ffmpeg"]])
def test_the_backend_is_required_and_checked(flags: list[str]) -> None:
    with pytest.raises(SystemExit):
        _config(*flags)


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-video {vhost_device_video.__version__}\n"


def test_a_missing_v4l2_device_is_one_line_and_status_1(tmp_path: Path) -> None:
    socket = tmp_path / "v.sock"
    argv = [*DAEMON, "-s", str(socket), "-b", "v4l2-decoder", "-d", str(tmp_path / "video9")]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == f"error: cannot open {tmp_path / 'video9'}: No such file or directory\n"
    assert not socket.exists()  # checked before the socket


def test_a_device_that_is_not_a_decoder_is_refused(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "v.sock"), "-b", "v4l2-decoder", "-d", "/dev/null"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr.startswith("error: /dev/null is not a V4L2 device")
    assert run.stderr.count("\n") == 1


def test_errors_are_rooted_in_the_core_tree() -> None:
    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(V4l2Error, BackendError) and issubclass(V4l2Error, DeviceError)
    err = V4l2Error("busy", Path("/dev/video0"), 16)
    assert (err.path, err.errno) == (Path("/dev/video0"), 16)
