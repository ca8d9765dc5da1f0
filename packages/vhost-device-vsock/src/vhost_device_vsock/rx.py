"""rx: what the device puts in the guest's rx buffers, and when.

Only when it has something to say, in this order: control packets (RESPONSE, RST,
SHUTDOWN, CREDIT_UPDATE, REQUEST), sibling packets, then host data from connections
that are ready, round robin. Host data is read straight into the guest's buffer, never
more than the guest's credit allows. A connection's socket stays in the epoll set
while the guest can take its data (once drained, it wakes the worker only when data
comes); without credit, or while the guest has no rx buffers, it leaves the set until
that changes. So a stuck host peer or guest stalls only its own connection, and
nothing spins. A stream's data is read in C (`_datapath.HostReader`) while nothing
else waits for rx buffers; this module takes over whenever anything does.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from vhost_user_core import DescriptorChain

from ._datapath import HostReader
from .connection import MAX_CONNECTIONS, SHUT_RCV, State, VsockConnection
from .packet import HEADER, HEADER_SIZE, VMADDR_CID_HOST, Header, Op, SeqFlag, Shutdown

if TYPE_CHECKING:
    from .device import VsockBackend

#: Control packets waiting for rx buffers; a guest that floods bad packets while
#: posting no rx buffers loses the RST replies beyond this.
MAX_CONTROL = 4 * MAX_CONNECTIONS
#: rx buffers popped at a time (the rest stay on the ring).
RX_BATCH = 64


class RxFiller:
    """The device's rx side: the control queue, the ready queue of connections with
    host data, and the loop that fills rx buffers from them."""

    def __init__(self, device: VsockBackend) -> None:
        self.device = device
        self.inbox = device.vm.inbox
        self.control: deque[bytes] = deque()
        self.ready: deque[VsockConnection] = deque()

    def clear(self) -> None:
        self.control.clear()
        self.ready.clear()

    def fill(self, *, notify: bool = True) -> None:
        """Fill rx buffers while there is something to send and buffers to take it;
        `notify=False` leaves the interrupt to the caller (`Vring.signal_used`)."""
        ring = self.device.rx_ring
        was_busy, ring.busy = ring.busy, True  # the C side takes no buffer meanwhile
        try:
            self._fill(notify)
        finally:
            ring.busy = was_busy
        if notify:
            ring.signal()  # for control packets the C side wrote since the last

    def _fill(self, notify: bool) -> None:
        rx = self.device.rx
        while self._has_work():
            if rx is None or not (batch := rx.poll(self._buffers_wanted())):
                if rx is not None and rx.active and rx.enable_notification():
                    continue
                # The guest's next rx kick brings us back; until then a readable
                # socket would wake us for nothing, again and again.
                for conn in self.ready:
                    self.unwatch_read(conn)
                return
            lengths = []
            for chain in batch:
                length = self._fill_one(chain)
                if length < 0:
                    break
                lengths.append(length)
            unused = len(batch) - len(lengths)
            if unused:
                rx.rewind(unused)
            if lengths:
                rx.complete(batch, lengths, notify=notify)
            if unused:
                return

    def _buffers_wanted(self) -> int:
        """rx buffers to pop for what waits: popping a whole batch for one control
        packet costs more than the packet (each chain is walked, then rewound)."""
        if self.ready:
            return RX_BATCH
        wanted = len(self.control) + self.inbox.buffers_wanted(RX_BATCH)
        return max(1, min(wanted, RX_BATCH))

    def _has_work(self) -> bool:
        return bool(self.control or self.ready or self.inbox)

    def _fill_one(self, chain: DescriptorChain) -> int:
        """Put the next packet in `chain`; its length, or -1 if there is none."""
        if chain.error:
            self.device.complain("rx buffer rejected: %s", chain.error)
            return 0
        room = chain.writable_len
        if room < HEADER_SIZE:
            self.device.complain("rx buffer of %d bytes cannot hold a header", room)
            return 0
        while True:
            if self.control:
                packet = self.control.popleft()
                chain.write(packet)
                return len(packet)
            sibling = self.inbox.get(room - HEADER_SIZE) if self.inbox else None
            if sibling is not None:
                hdr, data = sibling
                chain.write(hdr.encode())
                if data:
                    chain.write(data, HEADER_SIZE)
                return HEADER_SIZE + len(data)
            if not self.ready:
                return -1
            length = self._fill_from_host(self.ready[0], chain, room)
            if length:
                return length

    def _fill_from_host(self, conn: VsockConnection, chain: DescriptorChain, room: int) -> int:
        """Host data of `conn`, the head of the ready queue, read into `chain`; 0 (and
        `conn` leaves the queue) if it had none to give."""
        if not conn.ready or self.device.conns.get(conn.key) is not conn:
            self.ready.popleft()
            conn.ready = False
            return 0
        limit = min(conn.credit.peer_free(), room - HEADER_SIZE)
        if limit <= 0:  # no credit: the guest's next credit update resumes it
            self._not_ready(conn)
            self.unwatch_read(conn)
            return 0
        try:
            got = conn.read_into(chain, HEADER_SIZE, limit)
        except (BlockingIOError, InterruptedError):
            self._not_ready(conn)
            self.want_read(conn)
            return 0
        except OSError as exc:
            self._not_ready(conn)
            self.device.host_gone(conn, exc)
            return 0
        if got == 0:
            self._not_ready(conn)
            self.unwatch_read(conn)  # EOF stays readable
            conn.host_eof = True
            self.send_control(conn, Op.SHUTDOWN, Shutdown.SEND)
            return 0
        flags = 0
        if conn.seqpacket and conn.message_done:
            flags = SeqFlag.EOM
        chain.write(self.header(conn, Op.RW, got, flags))
        conn.credit.sent(got)
        if conn.from_host is not None or (not conn.seqpacket and got == limit):
            self.ready.rotate(-1)  # likely more: after the others had their turn
        else:
            self._not_ready(conn)
            self.want_read(conn)
        return HEADER_SIZE + got

    def _not_ready(self, conn: VsockConnection) -> None:
        self.ready.popleft()
        conn.ready = False

    # -- reading host sockets --------------------------------------------------------

    def _host_readable(self, conn: VsockConnection) -> None:
        # The socket stays watched: once drained it only wakes us when data comes. It
        # leaves the epoll set when its data cannot move (no credit, no rx buffers).
        if not conn.ready:
            conn.ready = True
            self.ready.append(conn)
        self.fill()

    def want_read(self, conn: VsockConnection) -> None:
        """Read the host socket when it has data, if the guest may take some."""
        if (
            conn.ready
            or conn.watching_read
            or conn.state != State.ESTABLISHED
            or conn.host_eof
            or conn.guest_shut & SHUT_RCV
            or not conn.credit.peer_free()
        ):
            return
        if conn.from_host is not None:  # already read: deliver without waiting
            conn.ready = True
            self.ready.append(conn)
            return
        worker = self.device.worker
        assert worker is not None

        def readable() -> None:
            self._host_readable(conn)

        # A stream's data is read in C while nothing else waits for rx buffers.
        device = self.device
        worker.add_reader(
            conn.fd, HostReader(conn, device.rx_ring, readable) if device.fast else readable
        )
        conn.watching_read = True

    def unwatch_read(self, conn: VsockConnection) -> None:
        worker = self.device.worker
        if conn.watching_read and worker is not None:
            worker.remove_reader(conn.fd)
        conn.watching_read = False

    def header(self, conn: VsockConnection, op: Op, length: int = 0, flags: int = 0) -> bytes:
        """A packet header from the host side of `conn`, with its current credit (for
        the data this path reads; control packets are built in C)."""
        buf_alloc, fwd_cnt = conn.credit.advertised()
        return HEADER.pack(
            VMADDR_CID_HOST,
            self.device.cid,
            conn.local_port,
            conn.peer_port,
            length,
            conn.sock_type,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        )

    # -- control packets -------------------------------------------------------------

    def send_control(self, conn: VsockConnection, op: Op, flags: int = 0) -> None:
        """Into the next rx buffer at once (`RxRing`, in C) unless packets wait for
        buffers; then behind them."""
        self.device.rx_ring.send_control(conn, op, flags)

    def _queue_control(self, packet: bytes) -> None:
        """A control packet waits for an rx buffer (`RxRing` calls this)."""
        if len(self.control) >= MAX_CONTROL:
            self.device.complain("%d control packets wait for rx buffers: one dropped", MAX_CONTROL)
            return
        self.control.append(packet)

    def reset_reply(self, hdr: Header) -> None:
        """RST for a packet that belongs to no connection (never in reply to an RST)."""
        self.device.rx_ring.put_control(
            Header(
                hdr.dst_cid,
                self.device.cid,
                hdr.dst_port,
                hdr.src_port,
                0,
                hdr.type,
                Op.RST,
                0,
                0,
                0,
            ).encode()
        )
