"""The command: flags into the config, --version, and the installed daemon end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_template
from vhost_device_template.args import LoopbackConfig, build_parser
from vhost_device_template.errors import ConfigError, DeviceError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_template.main"]


def _config(*flags: str) -> LoopbackConfig:
    return LoopbackConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config() == LoopbackConfig(sink="memory", output=None)
    assert _config("--sink", "file", "-o", "out") == LoopbackConfig("file", Path("out"))


@pytest.mark.parametrize("flags", [["--sink", "file"], ["--output", "out"]])
def test_output_goes_with_the_file_sink_only(flags: list[str]) -> None:
    with pytest.raises(ConfigError, match="--output"):
        _config(*flags)


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-template {vhost_device_template.__version__}\n"


def test_a_bad_config_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "--sink", "file"]
    run = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stderr == "error: --output PATH goes with --sink file, and only with it\n"
    assert not (tmp_path / "t.sock0").exists()  # checked before any socket


def test_daemon_writes_the_guest_bytes_to_its_file(tmp_path: Path) -> None:
    out, socket = tmp_path / "out.bin", tmp_path / "t.sock0"
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), "--sink", "file", "-o", str(out)]
    with daemon_process(argv, log=tmp_path / "log", sockets=[socket]):
        with Frontend.connect(socket) as frontend:
            (queue,) = frontend.start_device(1, 128)
            assert frontend.ram is not None
            src, dst = frontend.ram.alloc(4), frontend.ram.alloc(4)
            frontend.ram.memory.write(src, b"ping")
            queue.driver.add([(src, 4, False), (dst, 4, True)])
            queue.publish()
            assert queue.wait_used(1)[0][1] == 4
            assert frontend.ram.memory.read(dst, 4) == b"ping"
    assert out.read_bytes() == b"ping"


def test_errors_are_rooted_in_the_core_tree() -> None:
    from vhost_device_template.errors import SinkError
    from vhost_user_core import BackendError, VhostUserError

    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(SinkError, BackendError) and issubclass(SinkError, DeviceError)
    assert SinkError("full", Path("/dev/full")).path == Path("/dev/full")
