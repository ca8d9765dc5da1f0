"""Framing of vhost-user messages over a Unix stream socket, fds over SCM_RIGHTS.

Used by both sides: the backend's request loop and the Python frontend. It knows the
header layout but nothing of what messages mean.
"""

from __future__ import annotations

import array
import os
import socket
from collections.abc import Sequence
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
            data, fds, truncated = recv_with_fds(self.sock, HEADER_SIZE, MAX_FDS)
        except ConnectionResetError as exc:
            raise Disconnected("connection reset by peer") from exc
        try:
            if not data:
                raise Disconnected("peer closed the connection")
            if truncated:
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
        try:
            send_with_fds(self.sock, data, fds)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Disconnected("peer closed the connection") from exc

    def reply(self, request: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        self.send(request, payload, fds, flags=HeaderFlag.VERSION | HeaderFlag.REPLY)

    def ack(self, request: int, ok: bool) -> None:
        """REPLY_ACK: a u64 that is 0 on success."""
        self.reply(request, U64(0 if ok else 1).encode())


def send_with_fds(sock: socket.socket, data: bytes | bytearray, fds: Sequence[int] = ()) -> None:
    """All of `data` on a stream socket, the fds (SCM_RIGHTS) with its first bytes: one
    sendmsg, then sendall for what it did not take. Raises OSError."""
    ancillary = []
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    sent = sock.sendmsg([data], ancillary)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_with_fds(
    sock: socket.socket, size: int, max_fds: int, flags: int = 0
) -> tuple[bytes, list[int], bool]:
    """One recvmsg of up to `size` bytes: the bytes, the fds that came with them (the
    caller owns them, also when it refuses them), and whether the sender attached more
    than `max_fds` (MSG_CTRUNC: the rest were dropped). Raises OSError."""
    data, ancdata, msg_flags, _ = sock.recvmsg(
        size, socket.CMSG_SPACE(max_fds * _FD_SIZE), flags | socket.MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, blob in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(blob) - len(blob) % _FD_SIZE
            fds.extend(array.array("i", blob[:usable]))
    return data, fds, bool(msg_flags & socket.MSG_CTRUNC)
