"""The compositor end of a cross-domain context: one Unix stream connection to the
configured Wayland socket (the only path this daemon ever connects to), bytes with fds
over SCM_RIGHTS both ways, and what kind of fd the compositor sent.

Wayland messages are opaque here: the guest proxy speaks the protocol, the daemon
relays bytes and swaps fds for ids (the context's business).
"""

from __future__ import annotations

import enum
import fcntl
import os
import socket
import stat

from vhost_user_core import recv_with_fds, send_with_fds

from .protocol import MAX_IDENTIFIERS, MAX_RECEIVE_DATA

#: How long a send may wait for a compositor that reads slowly before the context fails.
SEND_TIMEOUT = 2.0


class ChannelClosed(ConnectionError):
    """The compositor hung up (or the connection failed)."""


class FdKind(enum.Enum):
    MEMORY = "memory"  # a regular file or memfd: a keymap, a shm pool
    WRITE_PIPE = "write-pipe"  # the compositor keeps the read end
    OTHER = "other"


def classify(fd: int) -> tuple[FdKind, int]:
    """What the compositor sent, and for memory its size."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return FdKind.MEMORY, st.st_size
    if stat.S_ISFIFO(st.st_mode):
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        if mode == os.O_WRONLY:
            return FdKind.WRITE_PIPE, 0
    return FdKind.OTHER, 0


class WaylandChannel:
    """A connection to the compositor's socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(SEND_TIMEOUT)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, data: bytes, fds: list[int]) -> None:
        """All of `data`, the fds with its first byte."""
        try:
            send_with_fds(self.sock, data, fds)
        except OSError as exc:
            raise ChannelClosed(f"sending to {self.path}: {exc}") from exc

    def receive(self) -> tuple[bytes, list[int]]:
        """What the compositor has sent (at most one RECEIVE's worth), without
        waiting; the caller owns the fds. Raises ChannelClosed at EOF."""
        try:
            data, fds, truncated = recv_with_fds(
                self.sock, MAX_RECEIVE_DATA, MAX_IDENTIFIERS, socket.MSG_DONTWAIT
            )
        except (BlockingIOError, InterruptedError):
            return b"", []
        except OSError as exc:
            raise ChannelClosed(f"receiving from {self.path}: {exc}") from exc
        if truncated:
            for fd in fds:
                os.close(fd)
            raise ChannelClosed(f"{self.path} sent more than {MAX_IDENTIFIERS} fds at once")
        if not data and not fds:
            raise ChannelClosed(f"{self.path} hung up")
        return data, fds

    def close(self) -> None:
        self.sock.close()
