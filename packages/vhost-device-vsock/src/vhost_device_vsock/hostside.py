"""Where guest connections go on the host, and where host connections come from.

Two kinds, as upstream:
- `HybridHost` (Firecracker's hybrid vsock): a guest connection to port P is a Unix
  connection to `<uds-path>_P`; host programs connect to `<uds-path>` and say
  `CONNECT <port>\\n` first (`parse_connect` reads that line, no I/O).
- `ForwardHost`: the host's own AF_VSOCK; guest connections go to `forward-cid:P`, and
  each `--forward-listen` port P is listened on and leads to the guest's port P.

Host sockets are non-blocking; a connect that cannot finish at once completes later
(the device waits for the socket to become writable). A Unix connect to a listener
with room in its backlog finishes in the call itself, and the device answers the
guest at once.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from vhost_user_core import Listener

from .config import VmConfig
from .errors import HandshakeError
from .packet import SocketType

#: Longest `CONNECT <port>\n` line accepted; longer means garbage.
MAX_CONNECT_LINE = 32
#: Host connections waiting in the listen queue.
LISTEN_BACKLOG = 128


def parse_connect(buffer: bytes) -> tuple[int, bytes] | None:
    """The port of a complete `CONNECT <port>\\n` line at the start of `buffer`, and
    whatever followed it; None while the line is incomplete."""
    end = buffer.find(b"\n")
    # The same limit whether or not the newline came in the same read.
    if end > MAX_CONNECT_LINE or (end < 0 and len(buffer) > MAX_CONNECT_LINE):
        raise HandshakeError("no newline in the first 32 bytes")
    if end < 0:
        return None
    line = buffer[:end].removesuffix(b"\r")
    words = line.split(b" ")
    if len(words) != 2 or words[0] != b"CONNECT" or not words[1].isdigit():
        raise HandshakeError(f"expected 'CONNECT <port>', got {line[:MAX_CONNECT_LINE]!r}")
    port = int(words[1])
    if port > 0xFFFF_FFFF:
        raise HandshakeError(f"port {port} is out of range")
    return port, buffer[end + 1 :]


@dataclass
class HostListener:
    """A listening host socket; connections on it lead to `guest_port`, or, when that
    is None, to the port their CONNECT line names."""

    sock: socket.socket
    guest_port: int | None
    sock_type: SocketType = SocketType.STREAM


class HostSide:
    """How the device reaches the host: connect out, and listen."""

    listeners: list[HostListener]

    def connect(self, port: int, sock_type: SocketType) -> tuple[socket.socket, bool]:
        """A non-blocking socket connecting to host `port`, and whether the connect
        has finished already (False: still in progress). OSError if it cannot even
        start."""
        raise NotImplementedError

    def close(self) -> None:
        for listener in self.listeners:
            listener.sock.close()
        self.listeners = []


def _start_connect(sock: socket.socket, address: object) -> tuple[socket.socket, bool]:
    sock.setblocking(False)
    code = sock.connect_ex(address)  # type: ignore[arg-type]
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(code, errno.errorcode.get(code, str(code)))
    return sock, code == 0


class HybridHost(HostSide):
    def __init__(self, uds_path: str) -> None:
        self.uds_path = uds_path
        # Listener.bind replaces a stale socket file but never any other file.
        self._listener = Listener.bind(uds_path)
        self._listener.sock.listen(LISTEN_BACKLOG)
        self._listener.sock.setblocking(False)
        self.listeners = [HostListener(self._listener.sock, None)]

    def connect(self, port: int, sock_type: SocketType) -> tuple[socket.socket, bool]:
        kind = socket.SOCK_SEQPACKET if sock_type == SocketType.SEQPACKET else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
        return _start_connect(sock, f"{self.uds_path}_{port}")

    def close(self) -> None:
        self.listeners = []
        self._listener.close()  # also removes the socket file we created


class ForwardHost(HostSide):
    def __init__(self, forward_cid: int, listen_ports: tuple[int, ...]) -> None:
        self.forward_cid = forward_cid
        self.listeners = []
        try:
            for port in listen_ports:
                sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                self.listeners.append(HostListener(sock, port))
                sock.bind((socket.VMADDR_CID_ANY, port))
                sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
        except OSError as exc:
            self.close()
            raise OSError(exc.errno, f"AF_VSOCK listen: {exc.strerror}") from exc

    def connect(self, port: int, sock_type: SocketType) -> tuple[socket.socket, bool]:
        kind = socket.SOCK_SEQPACKET if sock_type == SocketType.SEQPACKET else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_VSOCK, kind | socket.SOCK_CLOEXEC)
        return _start_connect(sock, (self.forward_cid, port))


def host_side(config: VmConfig) -> HostSide:
    if config.uds_path is not None:
        return HybridHost(config.uds_path)
    assert config.forward_cid is not None  # VmConfig guarantees one of the two
    return ForwardHost(config.forward_cid, config.forward_listen)
