"""One vsock connection: its host socket, its credit, and the guest's bytes the host
peer has not taken yet.

The device decides what packets mean; this class only moves bytes between guest buffers
and the host socket without blocking. Guest data goes out with one sendmsg straight
from guest memory; only what the host peer cannot take at once is copied, and the credit
window bounds that copy (a guest that overruns it is reset).
"""

from __future__ import annotations

import enum
import select
import socket
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._datapath import ESTABLISHED, ConnectionState, recv_into
from .credit import Credit
from .errors import GuestOverrun
from .packet import Shutdown, SocketType

if TYPE_CHECKING:
    from vhost_user_core import DescriptorChain

#: Host sockets refuse a sendmsg with more parts than this (IOV_MAX).
IOV_MAX = 1024
#: Connections per VM, both directions together; a guest REQUEST beyond it is reset.
MAX_CONNECTIONS = 1024
#: Shutdown flags as plain ints for the per-packet tests: `0 & Shutdown.SEND` runs
#: IntFlag's Python `__rand__`, which cost more than the rest of the test.
SHUT_RCV, SHUT_SEND = int(Shutdown.RCV), int(Shutdown.SEND)


class State(enum.Enum):
    #: A host program asked for the guest's port; waiting for the guest's RESPONSE.
    REQUESTED = 1
    #: The guest asked; our connect to the host is still in progress.
    CONNECTING = 2
    ESTABLISHED = ESTABLISHED  # the one state the C data path moves data in
    #: The guest shut both directions down; flushing its last bytes before the RST.
    CLOSING = 4


class VsockConnection(ConnectionState):
    """One connection. The attributes the C data path reads and changes per packet are
    `ConnectionState`'s (C fields, the same names from Python)."""

    __slots__ = ("sock_type", "sock", "from_host_offset", "watching_write")

    def __init__(
        self,
        local_port: int,
        peer_port: int,
        sock_type: SocketType,
        sock: socket.socket,
        state: State,
        buf_alloc: int,
    ) -> None:
        #: Our (host-side) port and the guest's.
        self.local_port = local_port
        self.peer_port = peer_port
        self.sock_type = sock_type
        #: Fixed for the connection's life.
        self.key = (local_port, peer_port)
        self.seqpacket = sock_type == SocketType.SEQPACKET
        self.sock = sock
        self.fd = sock.fileno()
        self.state = state
        self.credit = Credit(buf_alloc)
        #: Guest bytes (stream) or whole messages (seqpacket) the host has not taken.
        self.held = deque()
        self.held_bytes = 0
        #: SEQPACKET: the guest's message being assembled until EOM.
        self.message = bytearray()
        #: Host bytes read but not yet given to the guest (a CONNECT line's tail, or a
        #: SEQPACKET message being sent in pieces), and how far it got.
        self.from_host = None
        self.from_host_offset = 0
        #: SHUTDOWN flags the guest sent.
        self.guest_shut = 0
        #: The host peer will send no more (it shut down or closed its side).
        self.host_eof = False
        self.watching_read = False
        self.watching_write = False
        #: In the device's queue of connections with host data to deliver.
        self.ready = False

    # guest -> host
    def from_guest(self, views: Sequence[memoryview], nbytes: int, eom: bool) -> None:
        """Pass `nbytes` of guest payload (the `views`) to the host socket, keeping
        what it cannot take yet. GuestOverrun if that exceeds the credit window."""
        if self.seqpacket:
            for view in views:
                self.message += view
            if eom:
                self.held.append(self.message)
                self.held_bytes += len(self.message)
                self.message = bytearray()
                self.flush()
            elif len(self.message) > self.credit.buf_alloc:
                raise GuestOverrun(
                    self.key,
                    len(self.message),
                    self.credit.buf_alloc,
                    "a message larger than the buffer",
                )
            self._check_window()
        else:
            sent = self._send_views(views) if not self.held and nbytes else 0
            self.hold_rest(views, nbytes, sent)

    def hold_rest(self, views: Sequence[memoryview], nbytes: int, sent: int) -> None:
        """Keep what follows the first `sent` bytes of a stream packet's `nbytes` (the
        `views`), which the host socket took already. GuestOverrun as from_guest."""
        if sent < nbytes:
            self._hold_tail(views, sent)
        self._check_window()

    def _check_window(self) -> None:
        if not self.credit.within_window(self.held_bytes + len(self.message)):
            held = self.held_bytes + len(self.message)
            window = self.credit.buf_alloc
            raise GuestOverrun(self.key, held, window, f"{held} bytes held, credit was {window}")

    def _send_views(self, views: Sequence[memoryview]) -> int:
        try:
            sent = self.sock.sendmsg(views[:IOV_MAX])
        except (BlockingIOError, InterruptedError):
            return 0
        self.credit.forwarded(sent)
        return sent

    def _hold_tail(self, views: Sequence[memoryview], skip: int) -> None:
        """Copy what follows the first `skip` bytes of `views` (guest memory is the
        guest's again once the packet completes)."""
        for view in views:
            if skip >= len(view):
                skip -= len(view)
                continue
            part = bytes(view[skip:])
            skip = 0
            self.held.append(part)
            self.held_bytes += len(part)

    def flush(self) -> bool:
        """Send held data as far as the host takes it; True when nothing is left.
        OSError (EPIPE, ECONNRESET) if the host peer is gone."""
        held = self.held
        while held:
            try:
                if self.seqpacket:
                    sent = self.sock.send(held[0])
                    if sent != len(held[0]):  # SEQPACKET sends whole or fails
                        raise OSError("message truncated by the host socket")
                else:
                    sent = self.sock.sendmsg(list(held)[:IOV_MAX])
            except (BlockingIOError, InterruptedError):
                return False
            self.credit.forwarded(sent)
            self.held_bytes -= sent
            while sent and held:
                first = held[0]
                if sent >= len(first):
                    sent -= len(first)
                    held.popleft()
                else:
                    held[0] = first[sent:]
                    sent = 0
        return True

    # host -> guest
    def read_into(self, chain: DescriptorChain, offset: int, limit: int) -> int:
        """Fill up to `limit` bytes of the chain's writable buffers, from `offset`, with
        host data; 0 means the host peer shut down (EOF). BlockingIOError if it has
        nothing now; OSError if it is gone. A SEQPACKET message is read whole and handed
        out in pieces: `message_done` tells whether the last piece went."""
        if self.seqpacket and self.from_host is None and not self._read_message():
            return 0
        if self.from_host is not None:
            return self._copy_from_host(chain, offset, limit)
        return recv_into(chain, offset, self.fd, limit)

    def _read_message(self) -> bool:
        """Take the next whole message off a SEQPACKET socket; False at EOF."""
        while True:
            size = self.sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
            if size:
                self.from_host = self.sock.recv(size)
                self.from_host_offset = 0
                return True
            # 0 is EOF, or an empty message, which virtio-vsock cannot carry as such.
            poller = select.poll()
            poller.register(self.fd, select.POLLRDHUP)
            if poller.poll(0):
                return False
            self.sock.recv(1)

    def _copy_from_host(self, chain: DescriptorChain, offset: int, limit: int) -> int:
        assert self.from_host is not None
        start = self.from_host_offset
        copied: int = chain.write(memoryview(self.from_host)[start : start + limit], offset)
        self.from_host_offset += copied
        if self.from_host_offset == len(self.from_host):
            self.from_host = None
        return copied

    @property
    def message_done(self) -> bool:
        return self.from_host is None

    def close(self) -> None:
        self.sock.close()


def slice_views(views: Sequence[memoryview], start: int, length: int) -> list[memoryview]:
    """The `length` bytes of `views` (taken as one buffer) starting at `start`."""
    out = []
    for view in views:
        if start >= len(view):
            start -= len(view)
            continue
        part = view[start : start + length]
        start = 0
        if part:
            out.append(part)
            length -= len(part)
        if length <= 0:
            break
    return out


def shut_write(sock: socket.socket) -> None:
    """Pass the guest's SHUTDOWN(SEND) on to the host peer."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the host peer is gone: the next read tells
