"""tx: what the guest's packets mean.

Each packet is checked (whole header, source CID is the guest's, length within the
buffer, a known type and op) and then goes to a connection, a sibling VM, or gets an
RST. Nothing a guest sends can stop the worker; bad packets are dropped and counted in
the log. Plain data and credit updates for a connection that takes them at once
rarely get here: the C fast path (`_datapath.TxFastPath`) serves the longest prefix
of those at each kick and leaves the rest of the ring to `process`, in order.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import TYPE_CHECKING

from vhost_user_core import DescriptorChain, Vring

from .connection import (
    MAX_CONNECTIONS,
    State,
    VsockConnection,
    shut_write,
    slice_views,
)
from .errors import GuestOverrun
from .packet import HEADER_SIZE, VMADDR_CID_HOST, Header, Op, SeqFlag, Shutdown, SocketType

if TYPE_CHECKING:
    from .device import VsockBackend

log = logging.getLogger(__name__)


class TxInterpreter:
    """The device's tx side: takes the guest's packets and acts on each."""

    def __init__(self, device: VsockBackend) -> None:
        self.device = device
        #: Connections whose credit moved in the batch being processed.
        self.touched: set[VsockConnection] = set()

    def process(self, tx: Vring) -> None:
        device = self.device
        rx = device.rx_filler
        touched = self.touched
        for batch in tx.batches():
            for chain in batch:
                self._packet(chain)
            for conn in touched:
                device.check_credit(conn)
                rx.want_read(conn)  # the guest's credit may have grown
            touched.clear()
            # Replies (credit updates above all) and the used tx buffers are both in
            # their rings before either interrupt: the guest's first wake-up finds
            # everything, and on a shared CPU it does not preempt the rest of this.
            rx.fill(notify=False)
            tx.complete(batch, [0] * len(batch), notify=False)
            if device.rx is not None:
                device.rx.signal_used()
            tx.signal_used()

    def _packet(self, chain: DescriptorChain) -> None:
        device = self.device
        rx = device.rx_filler
        if chain.error:
            device.complain("tx buffer rejected: %s", chain.error)
            return
        total = chain.readable_len
        if total < HEADER_SIZE:
            device.complain("tx packet of %d bytes is shorter than a header", total)
            return
        hdr = Header.decode(chain.read(HEADER_SIZE))
        if hdr.src_cid != device.cid:
            device.complain(
                "dropped a packet from CID %d (the guest is %d)", hdr.src_cid, device.cid
            )
            return
        if hdr.len > total - HEADER_SIZE:
            device.complain("%s: len exceeds the %d-byte buffer", hdr.describe(), total)
            conn = device.conns.get((hdr.dst_port, hdr.src_port))
            if conn is not None and hdr.dst_cid == VMADDR_CID_HOST:
                device.reset_connection(conn)  # the guest takes the RST as the end of it
            else:
                rx.reset_reply(hdr)
            return
        if hdr.dst_cid != VMADDR_CID_HOST:
            self._to_sibling(hdr, chain)
            return
        if not self._type_ok(hdr.type):
            device.complain("%s: socket type not offered", hdr.describe())
            rx.reset_reply(hdr)
            return
        conn = device.conns.get((hdr.dst_port, hdr.src_port))
        if conn is None:
            if hdr.op == Op.REQUEST:
                self._guest_connect(hdr)
            elif hdr.op != Op.RST:
                rx.reset_reply(hdr)
            return
        if conn.sock_type != hdr.type:
            device.reset_connection(conn)
            return
        conn.credit.peer_update(hdr.buf_alloc, hdr.fwd_cnt)
        op = hdr.op
        if op == Op.RW:
            self._guest_data(conn, hdr, chain)
        elif op == Op.CREDIT_UPDATE:
            pass
        elif op == Op.CREDIT_REQUEST:
            rx.send_control(conn, Op.CREDIT_UPDATE)
        elif op == Op.SHUTDOWN:
            self._guest_shutdown(conn, hdr.flags)
        elif op == Op.RESPONSE:
            self._guest_accepted(conn)
        elif op == Op.RST:
            device.drop(conn)
        else:  # a second REQUEST, or an unknown op
            device.complain("%s on a connection: reset", hdr.describe())
            device.reset_connection(conn)
        if conn.key in device.conns:
            self.touched.add(conn)

    def _type_ok(self, sock_type: int) -> bool:
        return sock_type == SocketType.STREAM or (
            sock_type == SocketType.SEQPACKET and self.device.seqpacket
        )

    def _guest_connect(self, hdr: Header) -> None:
        device = self.device
        if len(device.conns) >= MAX_CONNECTIONS:
            device.complain("guest opens more than %d connections: reset", MAX_CONNECTIONS)
            device.rx_filler.reset_reply(hdr)
            return
        sock_type = SocketType(hdr.type)
        try:
            sock, done = device.vm.host.connect(hdr.dst_port, sock_type)
        except OSError as exc:
            log.debug("guest connection to port %d refused: %s", hdr.dst_port, exc)
            device.rx_filler.reset_reply(hdr)
            return
        conn = VsockConnection(
            hdr.dst_port, hdr.src_port, sock_type, sock, State.CONNECTING, device.buf_alloc
        )
        conn.credit.peer_update(hdr.buf_alloc, hdr.fwd_cnt)
        device.conns[conn.key] = conn
        if done:
            device.connected(conn)  # a Unix listener took it in the call
        else:
            device.watch_write(conn)  # writable once the connect has finished

    def _guest_data(
        self, conn: VsockConnection, hdr: Header, chain: DescriptorChain, sent: int | None = None
    ) -> None:
        """Pass a data packet on to the host socket; `sent`: how much of it the fast
        path's sendmsg passed on already (only the rest is kept)."""
        device = self.device
        if conn.state != State.ESTABLISHED or conn.guest_shut & Shutdown.SEND:
            device.complain("%s: data on a connection not open for it", hdr.describe())
            device.reset_connection(conn)
            return
        views = slice_views(chain.readable_views(), HEADER_SIZE, hdr.len)
        try:
            if sent is None:
                conn.from_guest(views, hdr.len, bool(hdr.flags & SeqFlag.EOM))
            else:
                conn.hold_rest(views, hdr.len, sent)
        except GuestOverrun as exc:
            device.complain("%s: guest ignored the credit (%s)", hdr.describe(), exc)
            device.reset_connection(conn)
            return
        except OSError as exc:
            device.host_gone(conn, exc)
            return
        if conn.held:
            device.watch_write(conn)

    def _rest_of_data(self, conn: VsockConnection, chain: DescriptorChain, result: int) -> None:
        """The C fast path's sendmsg of a data packet took `result` bytes of it, or
        failed with -`result` (errno): keep the rest, or the host peer is gone."""
        if result < 0 and result not in (-errno.EAGAIN, -errno.EWOULDBLOCK):
            self.device.host_gone(conn, OSError(-result, os.strerror(-result)))
            return
        self._guest_data(conn, Header.decode(chain.read(HEADER_SIZE)), chain, max(result, 0))

    def _guest_shutdown(self, conn: VsockConnection, flags: int) -> None:
        conn.guest_shut |= flags & 3  # RCV | SEND, kept a plain int (connection.py)
        if conn.guest_shut & Shutdown.RCV:
            self.device.rx_filler.unwatch_read(conn)
            conn.ready = False
        if conn.guest_shut == Shutdown.BOTH:
            conn.state = State.CLOSING
            if not conn.held:
                self.device.reset_connection(conn)  # the RST tells the guest it is closed
        elif conn.guest_shut & Shutdown.SEND and not conn.held:
            shut_write(conn.sock)

    def _guest_accepted(self, conn: VsockConnection) -> None:
        device = self.device
        if conn.state != State.REQUESTED:
            device.reset_connection(conn)
            return
        device.cancel_connect_timer(conn)
        # The OK line is the hybrid protocol's answer to CONNECT; an AF_VSOCK client
        # (--forward-listen) said no CONNECT and gets the guest's bytes only.
        if conn.sock.family == socket.AF_UNIX:
            reply = f"OK {conn.local_port}\n".encode()
            try:
                if conn.sock.send(reply) != len(reply):
                    raise OSError("short write of the OK line")
            except OSError as exc:
                device.host_gone(conn, exc)
                return
        conn.state = State.ESTABLISHED
        device.watch_hangup(conn)

    def _to_sibling(self, hdr: Header, chain: DescriptorChain) -> None:
        device = self.device
        target = device.vm.siblings.route(device.vm, hdr.dst_cid)
        payload = b""
        if hdr.op == Op.RW and hdr.len:
            payload = chain.read(HEADER_SIZE + hdr.len)[HEADER_SIZE:]
        if target is not None and target.deliver(hdr._replace(len=len(payload)), payload):
            return
        log.debug("no route from CID %d to CID %d: %s", device.cid, hdr.dst_cid, hdr.describe())
        if hdr.op != Op.RST:
            device.rx_filler.reset_reply(hdr)
