"""The vsock data path in C: a connection's per-packet state (`ConnectionState`), the tx
queue's common case on the core's fast-path hook (`TxFastPath`), host data read
straight into rx buffers (`HostReader`, `recv_into`); no Python object per packet."""

from collections import deque
from collections.abc import Callable
from typing import Any

from vhost_user_core import DescriptorChain, QueueFastPath

from .credit import Credit

#: `State.ESTABLISHED`'s value: the one state the C paths move data in.
ESTABLISHED: int

class ConnectionState:
    """What the C paths read and change of a connection; `VsockConnection` adds the
    rest."""

    #: Our (host-side) port and the guest's.
    local_port: int
    peer_port: int
    #: (local_port, peer_port), the device's key for it.
    key: tuple[int, int]
    seqpacket: bool
    #: The host socket's file descriptor.
    fd: int
    #: A `connection.State`.
    state: Any
    credit: Credit
    #: Guest bytes (stream) or whole messages (seqpacket) the host has not taken.
    held: deque[bytes | bytearray]
    held_bytes: int
    #: SEQPACKET: the guest's message being assembled until EOM.
    message: bytearray
    #: Host bytes read but not yet given to the guest (a CONNECT line's tail, or a
    #: SEQPACKET message being sent in pieces).
    from_host: bytes | None
    #: SHUTDOWN flags the guest sent.
    guest_shut: int
    #: The host peer will send no more (it shut down or closed its side).
    host_eof: bool
    watching_read: bool
    #: In the device's queue of connections with host data to deliver.
    ready: bool
    @property
    def takes_data_now(self) -> bool:
        """An established stream the guest may still send on, holding nothing back: a
        data packet can go straight to the host socket."""

class RxRing:
    """The device's rx queue as the C paths use it, while the Python `RxFiller` has
    nothing waiting for buffers."""

    #: Set by `RxFiller.fill` while it holds popped rx buffers: no C write meanwhile.
    busy: bool
    def __init__(self, device: Any) -> None: ...
    def send_control(self, conn: ConnectionState, op: int, flags: int = 0) -> None:
        """A control packet for `conn` into the next rx buffer, or queued behind what
        the Python side has waiting (`RxFiller._queue_control`)."""
    def put_control(self, packet: bytes) -> None:
        """A whole 44-byte header-only packet, as `send_control` puts one."""
    def signal(self) -> None:
        """The rx interrupt, if buffers were used here since the last and the guest
        wants it."""
    @property
    def packets(self) -> int:
        """Host data packets written into rx buffers here so far."""

class TxFastPath(QueueFastPath):
    """The tx queue's common case in C (plain data and credit updates on connections
    that take them at once); the rest is `TxInterpreter.process`'s, in order."""

    def __init__(self, device: Any, rx: RxRing) -> None: ...
    @property
    def packets(self) -> int:
        """Packets served here so far."""

class RxFastPath(QueueFastPath):
    """The rx queue's kick while only connections with host data wait: their data
    read in C, round robin; anything else is `handle_queue`'s."""

    def __init__(self, rx: RxRing) -> None: ...

class HostReader:
    """A stream connection's readable callback: host data into rx buffers in C, or
    `slow()` (the Python path) when anything else waits."""

    def __init__(self, conn: ConnectionState, rx: RxRing, slow: Callable[[], None]) -> None: ...
    def __call__(self) -> None: ...

def recv_into(chain: DescriptorChain, offset: int, fd: int, limit: int) -> int:
    """Read up to `limit` bytes from `fd` into the chain's writable buffers from
    `offset`: the byte count, 0 at EOF. BlockingIOError if it has nothing now, OSError
    for any other error; ValueError if the chain has no room there."""
