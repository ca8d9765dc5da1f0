"""The vhost-device-sound command: flags, start-up errors, the control socket, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vhost_device_sound.args import build_parser
from vhost_device_sound.protocol import Code, Direction, Status
from vhost_device_sound.testing import SoundDriver, tone
from vhost_user_core.frontend import Frontend
from vhost_user_core.manpage import PackagePage
from vhost_user_core.testing.harness import wait_for_socket

PACKAGE = Path(__file__).resolve().parents[1]
DAEMON = [sys.executable, "-m", "vhost_device_sound.main"]


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


def test_man_page_matches_the_parser() -> None:
    page = PackagePage.of(PACKAGE)
    assert page.diff() == "", "run `python3 xtask manpages`"
    for text in ("initial\\-streams", "control\\-socket", "QUERY"):
        assert text in page.page


def ask(path: Path, line: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(line.encode() + b"\n")
        return sock.makefile().readline().strip()


def test_daemon_with_a_control_socket(tmp_path: Path) -> None:
    sock, control = tmp_path / "snd.sock", tmp_path / "control.sock"
    proc = subprocess.Popen(
        [
            *DAEMON,
            "--socket",
            str(sock),
            "--control-socket",
            str(control),
            "--initial-streams",
            "none",
        ]
    )
    try:
        wait_for_socket(sock)
        wait_for_socket(control)
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert ask(control, "QUERY") == "output off input off"
        assert ask(control, "SET output on") == "OK"
        with Frontend.connect(sock) as frontend:
            driver = SoundDriver(frontend)
            driver.start_stream(0)
            driver.post_playback(bytes(1920))
            assert driver.reap(driver.tx, 1)[0].status == 0x8000
        assert ask(control, "QUERY") == "output on input off"  # kept across connections
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert not sock.exists() and not control.exists()


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
    sock = tmp_path / "snd.sock"
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf)}
    proc = subprocess.Popen(
        [*DAEMON, "--socket", str(sock), "--backend", "alsa", "--alsa-device", "guest_out"],
        env=env,
    )
    try:
        wait_for_socket(sock)
        pcm = tone(1000, 0.3)
        with Frontend.connect(sock) as frontend:
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
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert pcm in out.read_bytes()


def test_unknown_alsa_device_is_reported_at_prepare(tmp_path: Path) -> None:
    sock = tmp_path / "snd.sock"
    proc = subprocess.Popen(
        [*DAEMON, "--socket", str(sock), "--backend", "alsa", "--alsa-device", "no_such_pcm"],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_socket(sock)
        with Frontend.connect(sock) as frontend:
            driver = SoundDriver(frontend)
            assert driver.set_params(0) is Status.OK
            assert driver.pcm(Code.PCM_PREPARE, 0) is Status.IO_ERR
            assert driver.pcm(Code.PCM_START, 0) is Status.BAD_MSG  # back to RELEASE
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert b"no_such_pcm" in err
    finally:
        proc.kill()


def test_pipewire_missing_at_start_is_a_warning_not_an_exit(tmp_path: Path) -> None:
    sock = tmp_path / "snd.sock"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "PIPEWIRE_RUNTIME_DIR": str(tmp_path)}
    env.pop("PIPEWIRE_REMOTE", None)
    proc = subprocess.Popen(
        [*DAEMON, "--socket", str(sock), "--backend", "pipewire"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_socket(sock)
        with Frontend.connect(sock) as frontend:
            driver = SoundDriver(frontend)
            assert driver.set_params(0) is Status.OK
            assert driver.pcm(Code.PCM_PREPARE, 0) is Status.IO_ERR
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert b"cannot connect to PipeWire" in err and b"PREPARE fails until" in err
    finally:
        proc.kill()
