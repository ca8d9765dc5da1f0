"""The command: flags into the config, one-line errors, --version, and the installed
daemon end to end on the simulated controller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from spi_driver import OK, SpiDriver, head

import vhost_device_spi
from vhost_device_spi.args import SpiDaemonConfig, build_parser
from vhost_device_spi.errors import ConfigError, ControllerError, SpiError, TransferError
from vhost_user_core import BackendError, VhostUserError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_spi.main"]


def _config(*flags: str) -> SpiDaemonConfig:
    return SpiDaemonConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_one_device_serves_every_socket() -> None:
    assert _config("-l", "sim") == SpiDaemonConfig(("sim",))
    assert _config("-c", "3", "-l", "/dev/spidev0.0").devices == ("/dev/spidev0.0",) * 3


def test_one_device_per_socket() -> None:
    flags = ["-c", "2", "-l", "/dev/spidev0.0", "-l", "/dev/spidev1.0"]
    assert _config(*flags).devices == ("/dev/spidev0.0", "/dev/spidev1.0")
    assert _config("-c", "2", "-l", "sim", "-l", "sim").devices == ("sim", "sim")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-c", "3", "-l", "sim", "-l", "sim"], "2 --device flags for 3 sockets"),
        (["-l", "sim", "-l", "sim"], "2 --device flags for 1 sockets"),
        (["-c", "2", "-l", "/dev/spidev0.0", "-l", "/dev/spidev0.0"], "the same spidev"),
        (["-l", " "], "an empty device name"),
    ],
)
def test_bad_device_lists(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(*flags)


def test_device_is_required() -> None:
    run = subprocess.run([*DAEMON, "-s", "/tmp/x.sock"], capture_output=True, text=True)
    assert run.returncode == 2 and "-l/--device" in run.stderr


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-spi {vhost_device_spi.__version__}\n"


@pytest.mark.parametrize(
    ("device", "line"),
    [
        ("/dev/spidev9.9", "error: cannot open /dev/spidev9.9: No such file or directory\n"),
        ("/dev/null", "error: /dev/null: not a spidev device\n"),
    ],
)
def test_a_bad_device_is_one_line_and_status_1(device: str, line: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [*DAEMON, "-s", str(tmp_path / "s.sock"), "-l", device], capture_output=True, text=True
    )
    assert (run.returncode, run.stderr) == (1, line)
    assert not (tmp_path / "s.sock0").exists()  # checked before any socket


def test_a_bad_count_is_one_line_and_status_1(tmp_path: Path) -> None:
    argv = [*DAEMON, "-s", str(tmp_path / "s.sock"), "-c", "2", "-l", "sim", "-l", "a", "-l", "b"]
    run = subprocess.run(argv, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (
        1,
        "error: 3 --device flags for 2 sockets: give one for all, or one per socket\n",
    )


def test_daemon_serves_two_guests_on_the_simulated_controller(tmp_path: Path) -> None:
    sockets = [tmp_path / "s.sock0", tmp_path / "s.sock1"]
    argv = [*DAEMON, "-s", str(tmp_path / "s.sock"), "-c", "2", "-l", "sim"]
    with daemon_process(argv, log=tmp_path / "log", sockets=sockets):
        for socket in sockets:
            with Frontend.connect(socket) as frontend:
                frontend.start_device(1, 1024)
                driver = SpiDriver(frontend)
                answer = driver.transfer(head(), b"loop" + socket.name.encode(), 4 + 7)
                assert (answer.result, answer.rx) == (OK, b"loop" + socket.name.encode())


def test_errors_are_rooted_in_the_core_tree() -> None:
    assert issubclass(SpiError, VhostUserError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ControllerError, BackendError) and issubclass(TransferError, ControllerError)
    assert TransferError("EIO", "/dev/spidev0.0").path == "/dev/spidev0.0"
