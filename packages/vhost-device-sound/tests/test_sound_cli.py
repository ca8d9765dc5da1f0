"""The vhost-device-sound command: flags, start-up errors, the control socket, SIGTERM."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sound_daemon import DAEMON, running_daemon

import vhost_device_sound
from vhost_device_sound.args import build_parser
from vhost_device_sound.protocol import Code, Direction, Status
from vhost_device_sound.testing import SoundDriver, tone
from vhost_user_core.frontend import Frontend


def test_defaults() -> None:
    args = build_parser().parse_args(["--socket", "/tmp/snd.sock"])
    assert args.socket_path == "/tmp/snd.sock"
    assert args.backend == "null"
    assert args.initial_streams == frozenset({Direction.OUTPUT})
    assert args.control_socket is None and not args.controls


@pytest.mark.parametrize(
    "text, expected",
    [
        ("output", {Direction.OUTPUT}),
        ("input", {Direction.INPUT}),
        ("output,input", {Direction.OUTPUT, Direction.INPUT}),
        ("input, output", {Direction.OUTPUT, Direction.INPUT}),
        ("none", set()),
        ("NONE", set()),
    ],
)
def test_initial_streams(text: str, expected: set[Direction]) -> None:
    args = build_parser().parse_args(["--socket-fd", "3", "--initial-streams", text])
    assert args.initial_streams == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required"),
        (["--socket", "x", "--socket-fd", "3"], "not allowed with"),
        (["--socket", "x", "--backend", "gstreamer"], "invalid choice"),
        (["--socket", "x", "--initial-streams", "speakers"], "expected output, input"),
        (["--socket", "x", "--initial-streams", "none,output"], "expected output, input"),
        (["--socket", "x", "--initial-streams", ""], "expected output, input"),
    ],
)
def test_rejected(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_daemon_with_a_control_socket(tmp_path: Path) -> None:
    with running_daemon(tmp_path, "--initial-streams", "none", control=True) as daemon:
        assert daemon.control is not None
        assert stat.S_IMODE(daemon.control.stat().st_mode) == 0o600
        assert daemon.ask("QUERY") == "output off input off"
        assert daemon.ask("SET output on") == "OK"
        with Frontend.connect(daemon.socket) as frontend:
            driver = SoundDriver(frontend)
            driver.start_stream(0)
            driver.post_playback(bytes(1920))
            assert driver.reap(driver.tx, 1)[0].status == Status.OK
        assert daemon.ask("QUERY") == "output on input off"  # kept across connections


def test_control_socket_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "control.sock").write_text("not a socket")
    result = subprocess.run(
        [
            *DAEMON,
            "--socket",
            str(tmp_path / "snd.sock"),
            "--control-socket",
            str(tmp_path / "control.sock"),
        ],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert b"not a socket" in result.stderr
    assert not (tmp_path / "snd.sock").exists()


def test_alsa_backend_through_the_daemon(tmp_path: Path) -> None:
    """--backend alsa --alsa-device: what the guest plays reaches that PCM (a `file`
    PCM here: the host has no sound card), and plays in real time."""
    out = tmp_path / "out.raw"
    conf = tmp_path / "asound.conf"
    conf.write_text(
        f'pcm.guest_out {{ type file slave.pcm {{ type null }} file "{out}" format raw }}\n'
    )
    pcm = tone(1000, 0.3)
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf)}
    flags = ("--backend", "alsa", "--alsa-device", "guest_out")
    with (
        running_daemon(tmp_path, *flags, env=env) as daemon,
        Frontend.connect(daemon.socket) as frontend,
    ):
        driver = SoundDriver(frontend)
        driver.start_stream(0, period_bytes=1920, buffer_bytes=1920 * 30)
        t0 = time.monotonic()
        for i in range(30):
            driver.post_playback(pcm[i * 1920 : (i + 1) * 1920], publish=False)
        driver.tx.publish()
        done = driver.reap(driver.tx, 30)
        assert 0.25 <= done[-1].at - t0 <= 0.45
        assert driver.pcm(Code.PCM_STOP, 0) is Status.OK
        assert driver.pcm(Code.PCM_RELEASE, 0) is Status.OK
    assert pcm in out.read_bytes()


def test_unknown_alsa_device_is_reported_at_prepare(tmp_path: Path) -> None:
    flags = ("--backend", "alsa", "--alsa-device", "no_such_pcm")
    with running_daemon(tmp_path, *flags) as daemon, Frontend.connect(daemon.socket) as frontend:
        driver = SoundDriver(frontend)
        assert driver.set_params(0) is Status.OK
        assert driver.pcm(Code.PCM_PREPARE, 0) is Status.IO_ERR
        assert driver.pcm(Code.PCM_START, 0) is Status.BAD_MSG  # back to RELEASE
    assert "no_such_pcm" in daemon.stderr


def test_pipewire_missing_at_start_is_a_warning_not_an_exit(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PIPEWIRE_RUNTIME_DIR": str(tmp_path)}
    env.pop("PIPEWIRE_REMOTE", None)
    with (
        running_daemon(tmp_path, "--backend", "pipewire", env=env) as daemon,
        Frontend.connect(daemon.socket) as frontend,
    ):
        driver = SoundDriver(frontend)
        assert driver.set_params(0) is Status.OK
        assert driver.pcm(Code.PCM_PREPARE, 0) is Status.IO_ERR
    assert "cannot connect to PipeWire" in daemon.stderr
    assert "PREPARE fails until" in daemon.stderr


def test_version_flag() -> None:
    """The command prints the installed distribution's version (pyproject's, the only one)."""
    command = [sys.executable, "-m", "vhost_device_sound.main", "--version"]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-sound {vhost_device_sound.__version__}\n"
