"""Host programs connecting to the VM: accept on its listeners, and on the hybrid Unix
socket wait for the `CONNECT <port>` line before asking the guest.

Everything runs on the VM's worker thread, which watches the listeners and each
pending handshake. A listener that keeps failing to accept (out of fds, say) is left
alone for a while instead of spinning the worker; a host program that connects but
never sends its line holds one of at most MAX_HANDSHAKES slots until it closes.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from functools import partial

from vhost_user_core import Worker

from .errors import HandshakeError
from .hostside import HostListener, parse_connect

log = logging.getLogger(__name__)

#: Host programs that connected to the hybrid socket but have not sent CONNECT yet.
MAX_HANDSHAKES = 64
#: After a failed accept (out of fds), the listener is left alone this long.
ACCEPT_RETRY = 1.0

#: What a finished handshake hands on: the socket, the guest port it wants, and the
#: bytes it sent right after its CONNECT line.
ConnectCallback = Callable[[socket.socket, int, bytes], None]


class HostAcceptor:
    """Accepts host connections on `listeners` and hands each on to `connect` once it
    has said which guest port it wants (at once for a port's own listener)."""

    def __init__(
        self, worker: Worker, listeners: Sequence[HostListener], connect: ConnectCallback
    ) -> None:
        self._worker = worker
        self._listeners = tuple(listeners)
        self._connect = connect
        self.handshakes: dict[int, tuple[socket.socket, bytearray]] = {}
        self._closed = False

    def start(self) -> None:
        for listener in self._listeners:
            self._worker.add_reader(listener.sock.fileno(), partial(self._accept, listener))

    def close(self) -> None:
        """Stop watching the listeners (they outlive the backend) and drop every
        host program still in its handshake."""
        self._closed = True
        for listener in self._listeners:
            self._worker.remove_reader(listener.sock.fileno())
        for fd, (sock, _) in list(self.handshakes.items()):
            self._end_handshake(fd)
            sock.close()

    def _accept(self, listener: HostListener) -> None:
        while True:
            try:
                sock, _ = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of fds, say: the listener stays readable, so stop watching it
                # for a while rather than spin on it.
                log.warning("accepting a host connection: %s; retrying in 1 s", exc)
                self._pause_listener(listener)
                return
            sock.setblocking(False)
            if listener.guest_port is not None:
                self._connect(sock, listener.guest_port, b"")
            elif len(self.handshakes) >= MAX_HANDSHAKES:
                log.warning("more than %d host connections without CONNECT", MAX_HANDSHAKES)
                sock.close()
            else:
                fd = sock.fileno()
                self.handshakes[fd] = (sock, bytearray())
                self._worker.add_reader(fd, partial(self._handshake, fd))

    def _pause_listener(self, listener: HostListener) -> None:
        worker = self._worker
        fd = listener.sock.fileno()
        worker.remove_reader(fd)

        def resume() -> None:
            if not self._closed:
                worker.add_reader(fd, partial(self._accept, listener))

        worker.call_later(ACCEPT_RETRY, resume)

    def _handshake(self, fd: int) -> None:
        sock, buffer = self.handshakes[fd]
        try:
            data = sock.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        try:
            if not data:
                raise HandshakeError("closed before CONNECT")
            buffer += data
            parsed = parse_connect(bytes(buffer))
        except HandshakeError as exc:
            log.info("host connection dropped: %s", exc)
            self._end_handshake(fd)
            sock.close()
            return
        if parsed is not None:
            self._end_handshake(fd)
            port, rest = parsed
            self._connect(sock, port, rest)

    def _end_handshake(self, fd: int) -> None:
        del self.handshakes[fd]
        self._worker.remove_reader(fd)
