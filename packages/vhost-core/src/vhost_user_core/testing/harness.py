"""Run a backend in-process for tests: a Daemon on a temporary socket, plus a Frontend."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..daemon import BackendFactory, Daemon, Listener
from ..frontend import Frontend
from ..worker import Worker


@contextmanager
def running_daemon(
    factory: BackendFactory, socket_path: str | os.PathLike[str], *, reconnect: bool = True
) -> Iterator[Daemon]:
    """Serve `factory` on `socket_path` from background threads until the block ends."""
    daemon = Daemon(factory, [Listener.bind(socket_path)], reconnect=reconnect)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.shutdown()
        daemon.wait()


@contextmanager
def connected_frontend(
    factory: BackendFactory, socket_path: str | os.PathLike[str]
) -> Iterator[Frontend]:
    """A daemon serving `factory` and a Frontend connected to it."""
    with running_daemon(factory, socket_path), Frontend.connect(socket_path) as frontend:
        yield frontend


#: How long a daemon may take to listen: a Python start-up over 9p in an emulated
#: (TCG) hostkernel guest can take several times what it takes on the host.
START_TIMEOUT = 60.0 if "VHOST_HOSTKERNEL_INNER" in os.environ else 10.0


def wait_for_socket(
    path: str | os.PathLike[str],
    timeout: float = START_TIMEOUT,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until a daemon listens on `path` (QEMU gives up at once if it does not);
    if `proc` (the daemon) exits first, fail at once instead of waiting it out."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"the daemon exited {proc.returncode} before listening on {path}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {path} after {timeout} s") from None
            time.sleep(0.02)
        finally:
            probe.close()


def wait_idle(worker: Worker, timeout: float = 5.0) -> None:
    """Block until `worker` is back in its loop, done with what it was doing (a Python
    path still popping a ring takes chains posted meanwhile, which a test meant for
    the next kick's fast path)."""
    idle = threading.Event()
    worker.call_soon(idle.set)
    if not idle.wait(timeout):
        raise TimeoutError(f"worker {worker.name} still busy after {timeout} s")


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read `size` bytes from a stream socket; AssertionError at an early EOF."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 16))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


@contextmanager
def daemon_process(
    argv: Sequence[str],
    *,
    log: Path,
    sockets: Sequence[str | os.PathLike[str]] = (),
    **popen: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a daemon command as a process, its stderr in `log`, until the block ends;
    returns once it listens on every one of `sockets`. At the end, SIGTERM must make it
    exit 0 (else AssertionError with its log); if the block raised, it is killed."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(list(argv), stderr=stderr, **popen)
    try:
        for path in sockets:
            try:
                wait_for_socket(path, proc=proc)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}:\n{log.read_text(errors='replace')}") from None
        yield proc
        proc.send_signal(signal.SIGTERM)
        if proc.wait(10) != 0:
            raise AssertionError(
                f"{argv[0]} exited {proc.returncode} on SIGTERM:\n"
                + log.read_text(errors="replace")
            )
    finally:
        proc.kill()
        proc.wait()
