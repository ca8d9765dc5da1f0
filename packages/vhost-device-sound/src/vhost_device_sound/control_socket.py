"""The control socket server: several clients at once, one line in, one line out.

A thread with a selector serves every client without blocking on any of them (a client
that does not read its answers only fills its own buffer, then is dropped). The socket
file is created with mode 0600 without a window in which anyone else could connect: it
is bound inside a fresh 0700 directory, chmod-ed, then renamed into place.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import stat
import tempfile
import threading
from pathlib import Path

from .control_protocol import (
    MAX_LINE,
    Query,
    format_error,
    format_state,
    parse,
)
from .errors import CommandError, ControlSocketError
from .switches import Switches

log = logging.getLogger(__name__)

MAX_CLIENTS = 64
#: Unsent answers a client may pile up before it is disconnected.
MAX_PENDING_OUTPUT = 64 * 1024


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.discarding = False  # inside an over-long line: drop bytes up to its newline


class ControlServer:
    """Serves `switches` on a Unix socket at `path` until close()."""

    def __init__(self, path: str | os.PathLike[str], switches: Switches) -> None:
        self.path = Path(path)
        self.switches = switches
        self._listener = _bind_private(self.path)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._clients: dict[int, _Client] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="control-socket", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, drop every client and remove the socket file."""
        if self._stopping:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        for client in list(self._clients.values()):
            self._drop(client)
        self._selector.close()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            for key, events in self._selector.select():
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj == self._wake_r:
                    continue
                else:
                    client = self._clients.get(key.fd)
                    if client is None:
                        continue
                    try:
                        if events & selectors.EVENT_READ:
                            self._read(client)
                        if events & selectors.EVENT_WRITE and client.sock.fileno() >= 0:
                            self._flush(client)
                    except OSError as exc:
                        log.info("control client dropped: %s", exc)
                        self._drop(client)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if len(self._clients) >= MAX_CLIENTS:
            sock.sendall((format_error("too many clients") + "\n").encode())
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock)
        self._clients[sock.fileno()] = client
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, client: _Client) -> None:
        data = client.sock.recv(4096)
        if not data:
            self._drop(client)
            return
        for line in self._lines(client, data):
            client.outbuf += (self.answer(line) + "\n").encode()
        # Send first: only what the socket would not take counts as unread.
        self._flush(client)
        if len(client.outbuf) > MAX_PENDING_OUTPUT:
            log.warning("control client does not read its answers; dropping it")
            self._drop(client)

    def _lines(self, client: _Client, data: bytes) -> list[str | None]:
        """Split complete lines off the client's buffer. An over-long line comes out as
        None (answered with one error) and is skipped up to its newline."""
        client.inbuf += data
        lines: list[str | None] = []
        while True:
            end = client.inbuf.find(b"\n")
            if end < 0:
                if len(client.inbuf) > MAX_LINE and not client.discarding:
                    lines.append(None)
                    client.discarding = True
                if client.discarding:
                    client.inbuf.clear()
                return lines
            raw = bytes(client.inbuf[:end])
            del client.inbuf[: end + 1]
            if client.discarding:
                client.discarding = False
                continue
            if len(raw.rstrip(b"\r")) > MAX_LINE:
                lines.append(None)
                continue
            lines.append(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _flush(self, client: _Client) -> None:
        if client.outbuf:
            try:
                sent = client.sock.send(client.outbuf)
            except BlockingIOError:
                sent = 0
            del client.outbuf[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        self._selector.modify(client.sock, events)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        try:
            self._selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    # -- commands -----------------------------------------------------------------------

    def answer(self, line: str | None) -> str:
        """The one-line answer to one command line (None: a line that was too long)."""
        if line is None:
            return format_error(f"line longer than {MAX_LINE} bytes")
        try:
            command = parse(line)
        except CommandError as exc:
            return format_error(str(exc))
        if isinstance(command, Query):
            return format_state(self.switches.states())
        self.switches.set(command.direction, command.enabled)
        log.info(
            "%s %s (control socket)",
            command.direction.label,
            "enabled" if command.enabled else "disabled",
        )
        return "OK"


def _bind_private(path: Path) -> socket.socket:
    """A listening socket at `path`, mode 0600 from the moment it is reachable there.

    A stale socket file is replaced; any other file is refused."""
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ControlSocketError(
                path, f"{path} exists and is not a socket; refusing to replace it"
            )
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        private = Path(tempfile.mkdtemp(prefix=".control-", dir=path.parent))
        try:
            staged = private / "s"
            sock.bind(str(staged))
            os.chmod(staged, 0o600)
            sock.listen(16)
            os.rename(staged, path)
        finally:
            private.rmdir()
    except OSError as exc:
        sock.close()
        raise ControlSocketError(
            path, f"cannot create control socket {path}: {exc.strerror}"
        ) from exc
    return sock
