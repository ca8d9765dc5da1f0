"""Framing of vhost-user messages over a Unix stream socket, fds over SCM_RIGHTS.

Used by both sides: the backend's request loop and the Python frontend. It knows the
header layout but nothing of what messages mean.
"""

from __future__ import annotations

import array
import os
import socket
from dataclasses import dataclass, field

from .errors import Disconnected, ProtocolError
from .protocol import HEADER_SIZE, MAX_FDS, U64, Header, HeaderFlag

_FD_SIZE = array.array("i").itemsize


@dataclass(slots=True)
class Message:
    """One received message. The receiver owns `fds` and must close them."""

    header: Header
    payload: bytes
    fds: list[int] = field(default_factory=list)

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def take_fd(self) -> int:
        """Hand the single attached fd to the caller (who then owns it)."""
        return self.fds.pop()


class Connection:
    """A vhost-user socket: read whole messages, write requests and replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = self.sock.recv(size)
            if not chunk:
                raise Disconnected("peer closed the connection mid-message")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> Message:
        """Read one message; fds arrive with its first bytes (SCM_RIGHTS).

        Raises Disconnected on EOF, ProtocolError on a header we cannot frame (the
        stream cannot be resynchronised after that, so the caller must hang up).
        """
        try:
            data, ancdata, msg_flags, _ = self.sock.recvmsg(
                HEADER_SIZE, socket.CMSG_SPACE(MAX_FDS * _FD_SIZE)
            )
        except ConnectionResetError as exc:
            raise Disconnected("connection reset by peer") from exc
        fds = _fds_from(ancdata)
        try:
            if not data:
                raise Disconnected("peer closed the connection")
            if msg_flags & socket.MSG_CTRUNC:
                raise ProtocolError(f"more than {MAX_FDS} fds attached to one message")
            if len(data) < HEADER_SIZE:
                data += self._recv_exact(HEADER_SIZE - len(data))
            header = Header.decode(data)
            payload = self._recv_exact(header.size) if header.size else b""
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return Message(header, payload, fds)

    def send(
        self,
        request: int,
        payload: bytes = b"",
        fds: list[int] | tuple[int, ...] = (),
        flags: int = HeaderFlag.VERSION,
    ) -> None:
        """Send one message; header and payload go out in a single sendmsg."""
        data = Header(request, flags, len(payload)).encode() + payload
        ancillary = []
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        try:
            sent = self.sock.sendmsg([data], ancillary)
            if sent < len(data):
                self.sock.sendall(data[sent:])
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Disconnected("peer closed the connection") from exc

    def reply(self, request: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        self.send(request, payload, fds, flags=HeaderFlag.VERSION | HeaderFlag.REPLY)

    def ack(self, request: int, ok: bool) -> None:
        """REPLY_ACK: a u64 that is 0 on success."""
        self.reply(request, U64(0 if ok else 1).encode())


def _fds_from(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _FD_SIZE
            fds.extend(array.array("i", data[:usable]))
    return fds
