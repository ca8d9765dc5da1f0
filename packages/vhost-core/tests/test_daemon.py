"""The daemon as a process: signals, socket files, --socket-fd, several sockets."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from vhost_user_core.frontend import Frontend

ECHO = [sys.executable, str(Path(__file__).with_name("echo_backend.py"))]


def start(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*ECHO, *args], stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(10)


def test_sigterm_exits_cleanly_and_removes_socket(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    proc = start("-s", str(base))
    try:
        with Frontend.connect(f"{base}0") as frontend:
            frontend.start_device(2, 64)
            assert stop(proc) == 0
    finally:
        proc.kill()
    assert not Path(f"{base}0").exists()


def test_sigint_while_idle(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    proc = start("-s", str(base))
    Frontend.connect(f"{base}0").close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert not Path(f"{base}0").exists()


def test_signal_taken_by_another_thread_still_stops_it(tmp_path: Path) -> None:
    """The kernel may hand a process's signal to any of its threads; the main thread,
    asleep in select(), must still hear of it (about 1 in 10 SIGINTs hung before)."""
    base = tmp_path / "echo.sock"
    proc = start("-s", str(base))
    try:
        Frontend.connect(f"{base}0").close()
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{proc.pid}/task"))
        serving = next(tid for tid in threads if tid != proc.pid)
        assert ctypes.CDLL(None, use_errno=True).tgkill(proc.pid, serving, signal.SIGTERM) == 0
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert not Path(f"{base}0").exists()


def test_several_sockets_served_at_once(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    proc = start("-s", str(base), "-c", "3")
    try:
        frontends = [Frontend.connect(f"{base}{i}") for i in range(3)]
        for frontend in frontends:
            assert frontend.negotiate().queue_num == 2
        for frontend in frontends:
            frontend.close()
        assert stop(proc) == 0
    finally:
        proc.kill()


def test_relisten_after_disconnect(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    proc = start("-s", str(base))
    try:
        for _ in range(3):
            with Frontend.connect(f"{base}0") as frontend:
                frontend.start_device(1, 64)
        assert stop(proc) == 0
    finally:
        proc.kill()


def test_socket_fd_activation(tmp_path: Path) -> None:
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    fd = listener.fileno()
    proc = start("--socket-fd", str(fd), pass_fds=(fd,))
    listener.close()
    try:
        with Frontend.connect(path) as frontend:
            assert frontend.negotiate().queue_num == 2
        assert stop(proc) == 0
    finally:
        proc.kill()
    assert path.exists()  # systemd owns the socket file, not us


def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    Path(f"{base}0").write_text("precious")
    proc = start("-s", str(base))
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert b"not a socket" in err
    assert Path(f"{base}0").read_text() == "precious"


def test_bad_socket_fd(tmp_path: Path) -> None:
    r, w = os.pipe()
    proc = start("--socket-fd", str(r), pass_fds=(r,))
    _, err = proc.communicate(timeout=10)
    os.close(r)
    os.close(w)
    assert proc.returncode == 1
    assert b"socket" in err
