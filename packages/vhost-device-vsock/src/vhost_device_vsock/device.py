"""The virtio-vsock device (ID 19): queues rx, tx and event, all on one worker thread.

tx: each guest packet is checked (whole header, source CID is the guest's, length
within the buffer, a known type and op) and then goes to a connection, a sibling VM,
or gets an RST. Nothing a guest sends can stop the worker; bad packets are dropped
and counted in the log.

rx: the device fills rx buffers only when it has something to say, in this order:
control packets (RESPONSE, RST, SHUTDOWN, CREDIT_UPDATE, REQUEST), sibling packets,
then host data from connections that are ready, round robin. Host data is read
straight into the guest's buffer, never more than the guest's credit allows. A
connection's socket stays in the epoll set while the guest can take its data (once
drained, it wakes the worker only when data comes); without credit, or while the guest
has no rx buffers, it leaves the set until that changes. So a stuck host peer or guest
stalls only its own connection, and nothing spins.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    TimerHandle,
    VhostUserBackend,
    Vring,
    Worker,
)

from ._datapath import forward
from .connection import GuestOverrun, State, VsockConnection, slice_views
from .hostside import HandshakeError, HostListener, parse_connect
from .packet import (
    HEADER_SIZE,
    VIRTIO_VSOCK_F_SEQPACKET,
    VMADDR_CID_HOST,
    Header,
    Op,
    SeqFlag,
    Shutdown,
    SocketType,
    config_space,
)

if TYPE_CHECKING:
    from .vm import VirtualMachine

log = logging.getLogger(__name__)

RX, TX, EVENT = 0, 1, 2
#: Connections per VM, both directions together; a guest REQUEST beyond it is reset.
MAX_CONNECTIONS = 1024
#: Host programs that connected to the hybrid socket but have not sent CONNECT yet.
MAX_HANDSHAKES = 64
#: Control packets waiting for rx buffers; a guest that floods bad packets while
#: posting no rx buffers loses the RST replies beyond this.
MAX_CONTROL = 4 * MAX_CONNECTIONS
#: A host program's CONNECT waits this long for the guest to answer.
CONNECT_TIMEOUT = 10.0
#: After a failed accept (out of fds), the listener is left alone this long.
ACCEPT_RETRY = 1.0
#: rx buffers popped at a time (the rest stay on the ring).
RX_BATCH = 64
#: Host ports of host-initiated connections (Firecracker's range).
LOCAL_PORT_FIRST = 1 << 30
LOCAL_PORT_LAST = 0xFFFF_FFFF


class VsockBackend(VhostUserBackend):
    name = "vhost-device-vsock"
    num_queues = 3
    protocol_features = ProtocolFeature.MQ

    def __init__(self, vm: VirtualMachine) -> None:
        self.vm = vm
        self.cid = vm.cid
        self.max_queue_size = vm.config.queue_size
        self.buf_alloc = vm.config.tx_buffer_size
        self.features = STANDARD_FEATURES | VIRTIO_VSOCK_F_SEQPACKET
        self.conns: dict[tuple[int, int], VsockConnection] = {}
        self.control: deque[bytes] = deque()
        self.ready: deque[VsockConnection] = deque()
        self.handshakes: dict[int, tuple[socket.socket, bytearray]] = {}
        self.seqpacket = False
        self.worker: Worker | None = None
        self.rx: Vring | None = None
        self.tx: Vring | None = None
        self._touched: set[VsockConnection] = set()
        self._timers: dict[tuple[int, int], TimerHandle] = {}
        self._next_port = LOCAL_PORT_FIRST
        self._complaints = 0
        self._closed = False

    # framework hooks
    def config_space(self) -> bytes:
        return config_space(self.cid)

    def acked_features(self, features: int) -> None:
        self.seqpacket = bool(features & VIRTIO_VSOCK_F_SEQPACKET)

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self.worker = workers[0]
        self.rx, self.tx = vrings[RX], vrings[TX]
        self.vm.attach(self)
        for listener in self.vm.host.listeners:
            self.worker.add_reader(listener.sock.fileno(), partial(self._accept, listener))

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == TX:
            self._process_tx(vring)
        elif vring.index == RX:
            self.fill_rx()
        # EVENT: the device only ever sends TRANSPORT_RESET, on migration; the guest's
        # event buffers stay posted.

    def reset(self) -> None:
        self._close_connections()

    def close(self) -> None:
        self._closed = True
        self.vm.detach(self)
        if self.worker is not None:
            for listener in self.vm.host.listeners:
                self.worker.remove_reader(listener.sock.fileno())
        for fd, (sock, _) in list(self.handshakes.items()):
            self._end_handshake(fd)
            sock.close()
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.control.clear()
        self.ready.clear()

    def sibling_packet_arrived(self) -> None:
        """A sibling VM's thread queued a packet for this guest."""
        worker = self.worker
        if worker is not None and not self._closed:
            try:
                worker.call_soon(self.fill_rx)
            except OSError:
                pass  # the session is ending: its worker's wake-up fd is gone

    # tx: packets from the guest
    def _process_tx(self, tx: Vring) -> None:
        touched = self._touched
        for batch in tx.batches():
            forward(batch, self.conns, self.cid, touched, self._tx_packet, self._rest_of_data)
            for conn in touched:
                self._check_credit(conn)
                self._want_read(conn)  # the guest's credit may have grown
            touched.clear()
            # Replies first (credit updates above all), then the tx interrupt: the
            # guest wakes once and finds both, instead of waking for the tx buffers
            # and again for the credit it is waiting on.
            self.fill_rx()
            tx.complete(batch, [0] * len(batch))

    def _tx_packet(self, chain: DescriptorChain) -> None:
        if chain.error:
            self._complain("tx buffer rejected: %s", chain.error)
            return
        total = chain.readable_len
        if total < HEADER_SIZE:
            self._complain("tx packet of %d bytes is shorter than a header", total)
            return
        hdr = Header.decode(chain.read(HEADER_SIZE))
        if hdr.src_cid != self.cid:
            self._complain("dropped a packet from CID %d (the guest is %d)", hdr.src_cid, self.cid)
            return
        if hdr.len > total - HEADER_SIZE:
            self._complain("%s: len exceeds the %d-byte buffer", hdr.describe(), total)
            conn = self.conns.get((hdr.dst_port, hdr.src_port))
            if conn is not None and hdr.dst_cid == VMADDR_CID_HOST:
                self._reset(conn)  # the guest takes the RST as the end of it
            else:
                self._reset_reply(hdr)
            return
        if hdr.dst_cid != VMADDR_CID_HOST:
            self._to_sibling(hdr, chain)
            return
        if not self._type_ok(hdr.type):
            self._complain("%s: socket type not offered", hdr.describe())
            self._reset_reply(hdr)
            return
        conn = self.conns.get((hdr.dst_port, hdr.src_port))
        if conn is None:
            if hdr.op == Op.REQUEST:
                self._guest_connect(hdr)
            elif hdr.op != Op.RST:
                self._reset_reply(hdr)
            return
        if conn.sock_type != hdr.type:
            self._reset(conn)
            return
        conn.credit.peer_update(hdr.buf_alloc, hdr.fwd_cnt)
        op = hdr.op
        if op == Op.RW:
            self._guest_data(conn, hdr, chain)
        elif op == Op.CREDIT_UPDATE:
            pass
        elif op == Op.CREDIT_REQUEST:
            self._send_control(conn, Op.CREDIT_UPDATE)
        elif op == Op.SHUTDOWN:
            self._guest_shutdown(conn, hdr.flags)
        elif op == Op.RESPONSE:
            self._guest_accepted(conn)
        elif op == Op.RST:
            self._drop(conn)
        else:  # a second REQUEST, or an unknown op
            self._complain("%s on a connection: reset", hdr.describe())
            self._reset(conn)
        if conn.key in self.conns:
            self._touched.add(conn)

    def _type_ok(self, sock_type: int) -> bool:
        return sock_type == SocketType.STREAM or (
            sock_type == SocketType.SEQPACKET and self.seqpacket
        )

    def _guest_connect(self, hdr: Header) -> None:
        if len(self.conns) >= MAX_CONNECTIONS:
            self._complain("guest opens more than %d connections: reset", MAX_CONNECTIONS)
            self._reset_reply(hdr)
            return
        sock_type = SocketType(hdr.type)
        try:
            sock = self.vm.host.connect(hdr.dst_port, sock_type)
        except OSError as exc:
            log.debug("guest connection to port %d refused: %s", hdr.dst_port, exc)
            self._reset_reply(hdr)
            return
        conn = VsockConnection(
            hdr.dst_port, hdr.src_port, sock_type, sock, State.CONNECTING, self.buf_alloc
        )
        conn.credit.peer_update(hdr.buf_alloc, hdr.fwd_cnt)
        self.conns[conn.key] = conn
        self._watch_write(conn)  # writable once the connect has finished

    def _guest_data(
        self, conn: VsockConnection, hdr: Header, chain: DescriptorChain, sent: int | None = None
    ) -> None:
        """Pass a data packet on to the host socket; `sent`: how much of it the fast
        path's sendmsg passed on already (only the rest is kept)."""
        if conn.state != State.ESTABLISHED or conn.guest_shut & Shutdown.SEND:
            self._complain("%s: data on a connection not open for it", hdr.describe())
            self._reset(conn)
            return
        views = slice_views(chain.readable_views(), HEADER_SIZE, hdr.len)
        try:
            if sent is None:
                conn.from_guest(views, hdr.len, bool(hdr.flags & SeqFlag.EOM))
            else:
                conn.hold_rest(views, hdr.len, sent)
        except GuestOverrun as exc:
            self._complain("%s: guest ignored the credit (%s)", hdr.describe(), exc)
            self._reset(conn)
            return
        except OSError as exc:
            self._host_gone(conn, exc)
            return
        if conn.held:
            self._watch_write(conn)

    def _rest_of_data(self, conn: VsockConnection, chain: DescriptorChain, result: int) -> None:
        """The fast path's sendmsg of a data packet took `result` bytes of it, or
        failed with -`result` (errno): keep the rest, or the host peer is gone."""
        if result < 0 and result not in (-errno.EAGAIN, -errno.EWOULDBLOCK):
            self._host_gone(conn, OSError(-result, os.strerror(-result)))
            return
        self._guest_data(conn, Header.decode(chain.read(HEADER_SIZE)), chain, max(result, 0))

    def _guest_shutdown(self, conn: VsockConnection, flags: int) -> None:
        conn.guest_shut |= flags & Shutdown.BOTH
        if conn.guest_shut & Shutdown.RCV:
            self._unwatch_read(conn)
            conn.ready = False
        if conn.guest_shut == Shutdown.BOTH:
            conn.state = State.CLOSING
            if not conn.held:
                self._reset(conn)  # the RST tells the guest the close is complete
        elif conn.guest_shut & Shutdown.SEND and not conn.held:
            _shut_write(conn.sock)

    def _guest_accepted(self, conn: VsockConnection) -> None:
        if conn.state != State.REQUESTED:
            self._reset(conn)
            return
        timer = self._timers.pop(conn.key, None)
        if timer is not None:
            timer.cancel()
        reply = f"OK {conn.local_port}\n".encode()
        try:
            if conn.sock.send(reply) != len(reply):
                raise OSError("short write of the OK line")
        except OSError as exc:
            self._host_gone(conn, exc)
            return
        conn.state = State.ESTABLISHED

    def _to_sibling(self, hdr: Header, chain: DescriptorChain) -> None:
        target = self.vm.siblings.route(self.vm, hdr.dst_cid)
        payload = b""
        if hdr.op == Op.RW and hdr.len:
            payload = chain.read(HEADER_SIZE + hdr.len)[HEADER_SIZE:]
        if target is not None and target.deliver(hdr._replace(len=len(payload)), payload):
            return
        log.debug("no route from CID %d to CID %d: %s", self.cid, hdr.dst_cid, hdr.describe())
        if hdr.op != Op.RST:
            self._reset_reply(hdr)

    # host side
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
                self._host_connect(sock, listener.guest_port, b"")
            elif len(self.handshakes) >= MAX_HANDSHAKES:
                log.warning("more than %d host connections without CONNECT", MAX_HANDSHAKES)
                sock.close()
            else:
                fd = sock.fileno()
                self.handshakes[fd] = (sock, bytearray())
                assert self.worker is not None
                self.worker.add_reader(fd, partial(self._handshake, fd))

    def _pause_listener(self, listener: HostListener) -> None:
        worker = self.worker
        assert worker is not None
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
            self._host_connect(sock, port, rest)

    def _end_handshake(self, fd: int) -> None:
        del self.handshakes[fd]
        if self.worker is not None:
            self.worker.remove_reader(fd)

    def _host_connect(self, sock: socket.socket, guest_port: int, early: bytes) -> None:
        """A host program wants the guest's `guest_port`: ask the guest."""
        if len(self.conns) >= MAX_CONNECTIONS:
            log.warning("more than %d connections: host connection refused", MAX_CONNECTIONS)
            sock.close()
            return
        conn = VsockConnection(
            self._local_port(guest_port),
            guest_port,
            SocketType.STREAM,
            sock,
            State.REQUESTED,
            self.buf_alloc,
        )
        conn.from_host = early or None  # bytes sent right after the CONNECT line
        self.conns[conn.key] = conn
        self._send_control(conn, Op.REQUEST)
        assert self.worker is not None
        self._timers[conn.key] = self.worker.call_later(
            CONNECT_TIMEOUT, lambda: self._connect_timed_out(conn)
        )
        self.fill_rx()

    def _connect_timed_out(self, conn: VsockConnection) -> None:
        self._timers.pop(conn.key, None)
        if self.conns.get(conn.key) is conn and conn.state == State.REQUESTED:
            log.info("guest did not answer a connection to port %d", conn.peer_port)
            self._reset(conn)

    def _local_port(self, guest_port: int) -> int:
        while True:
            port = self._next_port
            self._next_port = port + 1 if port < LOCAL_PORT_LAST else LOCAL_PORT_FIRST
            if (port, guest_port) not in self.conns:
                return port

    def _writable(self, conn: VsockConnection) -> None:
        if conn.state == State.CONNECTING:
            self._unwatch_write(conn)
            error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                log.debug("connection to host port %d failed: errno %d", conn.local_port, error)
                self._reset(conn)
            else:
                conn.state = State.ESTABLISHED
                self._send_control(conn, Op.RESPONSE)
                self._want_read(conn)
            self.fill_rx()
            return
        try:
            done = conn.flush()
        except OSError as exc:
            self._host_gone(conn, exc)
            self.fill_rx()
            return
        if done:
            self._unwatch_write(conn)
            if conn.state == State.CLOSING:
                self._reset(conn)
            elif conn.guest_shut & Shutdown.SEND:
                _shut_write(conn.sock)
        self._check_credit(conn)
        self.fill_rx()

    def _host_readable(self, conn: VsockConnection) -> None:
        # The socket stays watched: once drained it only wakes us when data comes. It
        # leaves the epoll set when its data cannot move (no credit, no rx buffers).
        if not conn.ready:
            conn.ready = True
            self.ready.append(conn)
        self.fill_rx()

    def _want_read(self, conn: VsockConnection) -> None:
        """Read the host socket when it has data, if the guest may take some."""
        if (
            conn.ready
            or conn.watching_read
            or conn.state != State.ESTABLISHED
            or conn.host_eof
            or conn.guest_shut & Shutdown.RCV
            or not conn.credit.peer_free()
        ):
            return
        if conn.from_host is not None:  # already read: deliver without waiting
            conn.ready = True
            self.ready.append(conn)
            return
        assert self.worker is not None
        self.worker.add_reader(conn.fd, lambda: self._host_readable(conn))
        conn.watching_read = True

    def _unwatch_read(self, conn: VsockConnection) -> None:
        if conn.watching_read and self.worker is not None:
            self.worker.remove_reader(conn.fd)
        conn.watching_read = False

    def _watch_write(self, conn: VsockConnection) -> None:
        if not conn.watching_write:
            assert self.worker is not None
            self.worker.add_writer(conn.fd, lambda: self._writable(conn))
            conn.watching_write = True

    def _unwatch_write(self, conn: VsockConnection) -> None:
        if conn.watching_write and self.worker is not None:
            self.worker.remove_writer(conn.fd)
        conn.watching_write = False

    def _host_gone(self, conn: VsockConnection, exc: OSError) -> None:
        log.debug("host side of %d:%d gone: %s", conn.local_port, conn.peer_port, exc)
        self._reset(conn)

    # rx: packets to the guest
    def fill_rx(self) -> None:
        rx = self.rx
        while self._has_rx_work():
            if rx is None or not (batch := rx.poll(RX_BATCH)):
                if rx is not None and rx.active and rx.enable_notification():
                    continue
                # The guest's next rx kick brings us back; until then a readable
                # socket would wake us for nothing, again and again.
                for conn in self.ready:
                    self._unwatch_read(conn)
                return
            lengths = []
            for chain in batch:
                length = self._fill(chain)
                if length < 0:
                    break
                lengths.append(length)
            unused = len(batch) - len(lengths)
            if unused:
                rx.rewind(unused)
            if lengths:
                rx.complete(batch, lengths)
            if unused:
                return

    def _has_rx_work(self) -> bool:
        return bool(self.control or self.ready) or self.vm.has_sibling_packets

    def _fill(self, chain: DescriptorChain) -> int:
        """Put the next packet in `chain`; its length, or -1 if there is none."""
        if chain.error:
            self._complain("rx buffer rejected: %s", chain.error)
            return 0
        room = chain.writable_len
        if room < HEADER_SIZE:
            self._complain("rx buffer of %d bytes cannot hold a header", room)
            return 0
        while True:
            if self.control:
                packet = self.control.popleft()
                chain.write(packet)
                return len(packet)
            sibling = self.vm.next_sibling_packet()
            if sibling is not None:
                return self._fill_sibling(chain, room, *sibling)
            if not self.ready:
                return -1
            length = self._fill_from_host(self.ready[0], chain, room)
            if length:
                return length

    def _fill_sibling(self, chain: DescriptorChain, room: int, hdr: Header, data: bytes) -> int:
        """A sibling's packet, split if the guest's buffer is smaller (a Linux guest
        sends up to 64 KiB per packet but posts 4 KiB rx buffers)."""
        take = room - HEADER_SIZE
        if len(data) > take:
            rest = hdr._replace(len=len(data) - take)
            self.vm.push_back_sibling_packet(rest, data[take:])
            hdr = hdr._replace(len=take, flags=hdr.flags & ~(SeqFlag.EOM | SeqFlag.EOR))
            data = data[:take]
        chain.write(hdr.encode())
        if data:
            chain.write(data, HEADER_SIZE)
        return HEADER_SIZE + len(data)

    def _fill_from_host(self, conn: VsockConnection, chain: DescriptorChain, room: int) -> int:
        """Host data of `conn`, the head of the ready queue, read into `chain`; 0 (and
        `conn` leaves the queue) if it had none to give."""
        if not conn.ready or self.conns.get(conn.key) is not conn:
            self.ready.popleft()
            conn.ready = False
            return 0
        limit = min(conn.credit.peer_free(), room - HEADER_SIZE)
        if limit <= 0:  # no credit: the guest's next credit update resumes it
            self._not_ready(conn)
            self._unwatch_read(conn)
            return 0
        try:
            got = conn.read_into(chain, HEADER_SIZE, limit)
        except (BlockingIOError, InterruptedError):
            self._not_ready(conn)
            self._want_read(conn)
            return 0
        except OSError as exc:
            self._not_ready(conn)
            self._host_gone(conn, exc)
            return 0
        if got == 0:
            self._not_ready(conn)
            self._unwatch_read(conn)  # EOF stays readable
            conn.host_eof = True
            self._send_control(conn, Op.SHUTDOWN, Shutdown.SEND)
            return 0
        flags = 0
        if conn.seqpacket and conn.message_done:
            flags = SeqFlag.EOM
        chain.write(self._header(conn, Op.RW, got, flags))
        conn.credit.sent(got)
        if conn.from_host is not None or (not conn.seqpacket and got == limit):
            self.ready.rotate(-1)  # likely more: after the others had their turn
        else:
            self._not_ready(conn)
            self._want_read(conn)
        return HEADER_SIZE + got

    def _not_ready(self, conn: VsockConnection) -> None:
        self.ready.popleft()
        conn.ready = False

    # control packets
    def _header(self, conn: VsockConnection, op: Op, length: int = 0, flags: int = 0) -> bytes:
        buf_alloc, fwd_cnt = conn.credit.advertised()
        return Header(
            VMADDR_CID_HOST,
            self.cid,
            conn.local_port,
            conn.peer_port,
            length,
            conn.sock_type,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        ).encode()

    def _send_control(self, conn: VsockConnection, op: Op, flags: int = 0) -> None:
        self._queue_control(self._header(conn, op, 0, flags))

    def _queue_control(self, packet: bytes) -> None:
        if len(self.control) >= MAX_CONTROL:
            self._complain("%d control packets wait for rx buffers: one dropped", MAX_CONTROL)
            return
        self.control.append(packet)

    def _reset_reply(self, hdr: Header) -> None:
        """RST for a packet that belongs to no connection (never in reply to an RST)."""
        self._queue_control(
            Header(
                hdr.dst_cid, self.cid, hdr.dst_port, hdr.src_port, 0, hdr.type, Op.RST, 0, 0, 0
            ).encode()
        )

    def _reset(self, conn: VsockConnection) -> None:
        self._send_control(conn, Op.RST)
        self._drop(conn)

    def _drop(self, conn: VsockConnection) -> None:
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        timer = self._timers.pop(conn.key, None)
        if timer is not None:
            timer.cancel()
        self._unwatch_read(conn)
        self._unwatch_write(conn)
        conn.ready = False  # fill_rx skips it
        self._touched.discard(conn)
        conn.close()

    def _check_credit(self, conn: VsockConnection) -> None:
        if (
            conn.state == State.ESTABLISHED
            and self.conns.get(conn.key) is conn
            and conn.credit.update_due(conn.held_bytes + len(conn.message))
        ):
            self._send_control(conn, Op.CREDIT_UPDATE)

    def _complain(self, message: str, *args: object) -> None:
        """Log a guest's misbehaviour; rate-limited, since a guest can repeat it."""
        self._complaints += 1
        count = self._complaints
        if count <= 10 or count % 1000 == 0:
            suffix = f" ({count} so far)" if count > 10 else ""
            log.warning("CID %d: " + message + suffix, self.cid, *args)


def _shut_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the host peer is gone: the next read tells
