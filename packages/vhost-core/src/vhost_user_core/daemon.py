"""Listening sockets, the accept/serve/re-listen loop, and clean shutdown.

One serving thread per socket: accept one frontend, serve it with a fresh backend
until it hangs up, then listen again. SIGTERM/SIGINT wake every thread through an
eventfd, end the sessions and remove the socket files the daemon created.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .backend import VhostUserBackend
from .connection import Connection
from .errors import Disconnected, ProtocolError, VhostUserError
from .session import Session

log = logging.getLogger(__name__)

BackendFactory = Callable[[], VhostUserBackend]


class Listener:
    """A listening Unix socket: bound to a path by us, or inherited as an fd."""

    def __init__(self, sock: socket.socket, path: Path | None) -> None:
        self.sock = sock
        self.path = path  # set only when we created the file and must remove it

    @classmethod
    def bind(cls, path: str | os.PathLike[str]) -> Listener:
        """Bind `path`, replacing a stale socket file but never any other file."""
        p = Path(path)
        try:
            if stat.S_ISSOCK(p.lstat().st_mode):
                p.unlink()
            else:
                raise VhostUserError(f"{p} exists and is not a socket; refusing to replace it")
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(str(p))
            sock.listen(1)
        except OSError as exc:
            sock.close()
            raise VhostUserError(f"cannot listen on {p}: {exc.strerror}") from exc
        return cls(sock, p)

    @classmethod
    def from_fd(cls, fd: int) -> Listener:
        """Adopt an already listening socket (systemd socket activation, --socket-fd)."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise VhostUserError(f"--socket-fd {fd}: {exc.strerror}") from exc
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise VhostUserError(f"--socket-fd {fd} is not a Unix stream socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.listen(1)
        return cls(sock, None)

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


class Daemon:
    """Serves one or more listeners until shutdown() (or a signal) ends it."""

    def __init__(
        self, factory: BackendFactory, listeners: Sequence[Listener], *, reconnect: bool = True
    ) -> None:
        self.factory = factory
        self.listeners = list(listeners)
        self.reconnect = reconnect
        self._shutdown = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sessions_served = 0

    def start(self) -> None:
        for i, listener in enumerate(self.listeners):
            thread = threading.Thread(
                target=self._serve, args=(listener,), name=f"vhost-serve{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        """Thread-safe and signal-safe: wake every serving thread and let it end."""
        self._stopping.set()
        os.eventfd_write(self._shutdown, 1)

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()
        for listener in self.listeners:
            listener.close()
        os.close(self._shutdown)

    def run(self) -> None:
        """start(), exit cleanly on SIGTERM/SIGINT, wait(). Main thread only."""
        run_all([self])

    def _wait_readable(self, fd: int) -> bool:
        """Block until `fd` is readable; False if shutdown came first."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._shutdown, select.POLLIN)
        poller.poll()
        return not self._stopping.is_set()

    def _serve(self, listener: Listener) -> None:
        while not self._stopping.is_set():
            if not self._wait_readable(listener.sock.fileno()):
                return
            try:
                sock, _ = listener.sock.accept()
            except OSError as exc:
                log.error("accept failed: %s", exc)
                continue
            log.info("frontend connected")
            self._serve_connection(Connection(sock))
            self.sessions_served += 1
            log.info("frontend disconnected")
            if not self.reconnect:
                self.shutdown()
                return

    def _serve_connection(self, conn: Connection) -> None:
        try:
            backend = self.factory()
        except Exception:
            log.exception("cannot create the device backend")
            conn.close()
            return
        session = Session(conn, backend)
        try:
            while self._wait_readable(conn.fileno()):
                session.handle(conn.recv())
        except Disconnected:
            pass
        except ProtocolError as exc:
            # The stream cannot be re-synchronised after a framing error: hang up.
            log.error("closing the connection: %s", exc)
        except OSError as exc:
            log.error("connection error: %s", exc)
        finally:
            session.close()
            conn.close()


def run_all(daemons: Sequence[Daemon]) -> None:
    """Run several daemons in one process (one per VM, say) until SIGTERM/SIGINT, or
    until any of them shuts down; then end them all cleanly. Main thread only."""

    def stop_all(*_: object) -> None:
        for daemon in daemons:
            daemon.shutdown()

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    # The kernel may deliver a signal to any thread; then the main thread's select()
    # is not interrupted and the Python handler waits for it. The wake-up fd makes
    # any signal readable here, whichever thread took it.
    signalled, wake_up = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous_wake_up = signal.set_wakeup_fd(wake_up, warn_on_full_buffer=False)
    try:
        for daemon in daemons:
            daemon.start()
        # Until a shutdown: ours from a signal handler, or a one-shot daemon's own.
        watched = [signalled, *(daemon._shutdown for daemon in daemons)]
        while select.select(watched, [], [])[0] == [signalled]:
            os.read(signalled, 4096)  # a signal came: its handler, if ours, ends this
        stop_all()
        for daemon in daemons:
            daemon.wait()
    finally:
        signal.set_wakeup_fd(previous_wake_up)
        os.close(signalled)
        os.close(wake_up)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
