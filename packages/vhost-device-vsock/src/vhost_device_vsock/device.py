"""The virtio-vsock device (ID 19): queues rx, tx and event, all on one worker thread.

This module is the backend's hooks and the VM's connection table: opening a
connection for a host program, finishing a connect to the host, flushing guest data a
host peer could not take at once, resetting and dropping connections. The rest has a
room each: `tx` interprets the guest's packets, `rx` fills rx buffers (control
packets, sibling packets, host data), `accept` takes host programs' connections and
their CONNECT line.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vhost_user_core import (
    STANDARD_FEATURES,
    ProtocolFeature,
    QueueFastPath,
    TimerHandle,
    VhostUserBackend,
    Vring,
    Worker,
)

from ._datapath import RxFastPath, RxRing, TxFastPath
from .accept import HostAcceptor
from .connection import MAX_CONNECTIONS, State, VsockConnection, shut_write
from .packet import VIRTIO_VSOCK_F_SEQPACKET, Op, Shutdown, SocketType, config_space
from .rx import RxFiller
from .tx import TxInterpreter

if TYPE_CHECKING:
    from .vm import VirtualMachine

log = logging.getLogger(__name__)

__all__ = ["MAX_CONNECTIONS", "VsockBackend"]

RX, TX, EVENT = 0, 1, 2
#: A host program's CONNECT waits this long for the guest to answer.
CONNECT_TIMEOUT = 10.0
#: Host ports of host-initiated connections (Firecracker's range).
LOCAL_PORT_FIRST = 1 << 30
LOCAL_PORT_LAST = 0xFFFF_FFFF


def _hung_up(fd: int) -> bool:
    """Whether `fd` hangs up now (POLLHUP), not just in an event read earlier."""
    poller = select.poll()
    poller.register(fd, 0)
    return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))


class VsockBackend(VhostUserBackend):
    name = "vhost-device-vsock"
    num_queues = 3
    protocol_features = ProtocolFeature.MQ

    def __init__(self, vm: VirtualMachine, *, fast: bool = True) -> None:
        self.vm = vm
        #: The C data path's kick and host-read handlers (`fast_path`, `HostReader`);
        #: off, guest packets and host data take the Python path (the tests compare the
        #: two). Control packets are written by `RxRing` either way.
        self.fast = fast
        self.tx_fast: TxFastPath | None = None
        self.cid = vm.cid
        self.max_queue_size = vm.config.queue_size
        self.buf_alloc = vm.config.tx_buffer_size
        self.features = STANDARD_FEATURES | VIRTIO_VSOCK_F_SEQPACKET
        self.conns: dict[tuple[int, int], VsockConnection] = {}
        self.seqpacket = False
        self.worker: Worker | None = None
        self.rx: Vring | None = None
        self.tx: Vring | None = None
        self.rx_filler = RxFiller(self)
        self.tx_interpreter = TxInterpreter(self)
        #: The rx queue as the C data path fills it.
        self.rx_ring = RxRing(self)
        self.acceptor: HostAcceptor | None = None
        self._timers: dict[tuple[int, int], TimerHandle] = {}
        self._next_port = LOCAL_PORT_FIRST
        self._complaints = 0
        self._closed = False

    # -- framework hooks -------------------------------------------------------------

    def config_space(self) -> bytes:
        return config_space(self.cid)

    def acked_features(self, features: int) -> None:
        self.seqpacket = bool(features & VIRTIO_VSOCK_F_SEQPACKET)

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self.worker = workers[0]
        self.rx, self.tx = vrings[RX], vrings[TX]
        self.vm.attach(self)
        self.acceptor = HostAcceptor(self.worker, self.vm.host.listeners, self._host_connect)
        self.acceptor.start()

    def fast_path(self, vring: Vring) -> QueueFastPath | None:
        """Kicks are served in C first (`_datapath`): tx's plain data and credit
        updates, rx buffers for connections with host data; the rest in `handle_queue`."""
        if not self.fast:
            return None
        if vring.index == TX:
            self.tx_fast = TxFastPath(self, self.rx_ring)
            return self.tx_fast
        if vring.index == RX:
            return RxFastPath(self.rx_ring)
        return None

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == TX:
            self.tx_interpreter.process(vring)
        elif vring.index == RX:
            self.rx_filler.fill()
        # EVENT: the device only ever sends TRANSPORT_RESET, on migration; the guest's
        # event buffers stay posted.

    def reset(self) -> None:
        self._close_connections()

    def close(self) -> None:
        self._closed = True
        self.vm.detach(self)
        if self.acceptor is not None:
            self.acceptor.close()
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in list(self.conns.values()):
            self.drop(conn)
        self.rx_filler.clear()

    def sibling_packet_arrived(self) -> None:
        """A sibling VM's thread queued a packet for this guest: into the rx queue with
        it now, on that thread if this backend is idle (no wake-up to wait for)."""
        worker = self.worker
        if worker is not None and not self._closed:
            try:
                worker.call_now(self._fill_for_sibling)
            except OSError:
                pass  # the session is ending: its worker's wake-up fd is gone

    def _fill_for_sibling(self) -> None:
        if not self._closed:
            self.rx_filler.fill()

    # -- connections a host program opens --------------------------------------------

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
        self.rx_filler.send_control(conn, Op.REQUEST)
        assert self.worker is not None
        self._timers[conn.key] = self.worker.call_later(
            CONNECT_TIMEOUT, lambda: self._connect_timed_out(conn)
        )
        self.rx_filler.fill()

    def _connect_timed_out(self, conn: VsockConnection) -> None:
        self._timers.pop(conn.key, None)
        if self.conns.get(conn.key) is conn and conn.state == State.REQUESTED:
            log.info("guest did not answer a connection to port %d", conn.peer_port)
            self.reset_connection(conn)
            self.rx_filler.fill()

    def cancel_connect_timer(self, conn: VsockConnection) -> None:
        """The guest answered a host program's connection in time."""
        timer = self._timers.pop(conn.key, None)
        if timer is not None:
            timer.cancel()

    def _local_port(self, guest_port: int) -> int:
        while True:
            port = self._next_port
            self._next_port = port + 1 if port < LOCAL_PORT_LAST else LOCAL_PORT_FIRST
            if (port, guest_port) not in self.conns:
                return port

    # -- writing to host sockets -----------------------------------------------------

    def connected(self, conn: VsockConnection) -> None:
        """The connect to the host finished: the guest hears RESPONSE."""
        conn.state = State.ESTABLISHED
        self.rx_filler.send_control(conn, Op.RESPONSE)
        self.rx_filler.want_read(conn)
        self.watch_hangup(conn)

    def _writable(self, conn: VsockConnection) -> None:
        rx = self.rx_filler
        if conn.state == State.CONNECTING:
            self._unwatch_write(conn)
            error = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                log.debug("connection to host port %d failed: errno %d", conn.local_port, error)
                self.reset_connection(conn)
            else:
                self.connected(conn)
            rx.fill()
            return
        try:
            done = conn.flush()
        except OSError as exc:
            self.host_gone(conn, exc)
            rx.fill()
            return
        if done:
            self._unwatch_write(conn)
            if conn.state == State.CLOSING:
                self.reset_connection(conn)
            elif conn.guest_shut & Shutdown.SEND:
                shut_write(conn.sock)
        self.check_credit(conn)
        rx.fill()

    def watch_write(self, conn: VsockConnection) -> None:
        """Wake up when the host socket can take more (a connect finishing, held
        guest data)."""
        if not conn.watching_write:
            assert self.worker is not None
            self.worker.add_writer(conn.fd, lambda: self._writable(conn))
            conn.watching_write = True

    def _unwatch_write(self, conn: VsockConnection) -> None:
        if conn.watching_write and self.worker is not None:
            self.worker.remove_writer(conn.fd)
        conn.watching_write = False

    # -- ending connections ----------------------------------------------------------

    def watch_hangup(self, conn: VsockConnection) -> None:
        """Hear of the host peer's close at once, even while its socket is not read
        (no credit, no rx buffers, after its EOF): epoll reports a hang-up whatever
        else is watched, so this costs nothing until it happens."""
        assert self.worker is not None
        self.worker.add_hangup(conn.fd, lambda: self._host_hung_up(conn))

    def _host_hung_up(self, conn: VsockConnection) -> None:
        """Both directions of the host socket are shut. Unless the guest shut its own
        sending first (then this is only the host's EOF, which the read brings), the
        host peer closed or shut down both ways: it reads nothing more. The guest hears
        so now (SHUTDOWN RCV: its sends fail with EPIPE), while what the host wrote
        before still reaches it, then the host's EOF (SHUTDOWN SEND)."""
        if self.conns.get(conn.key) is not conn or not _hung_up(conn.fd):
            return  # a stale event: the fd was closed and its number reused meanwhile
        assert self.worker is not None
        self.worker.remove_hangup(conn.fd)
        if conn.state == State.CLOSING:  # the guest is done too: the RST it waits for
            self.reset_connection(conn)
        elif not conn.guest_shut & Shutdown.SEND:
            self.rx_filler.send_control(conn, Op.SHUTDOWN, Shutdown.RCV)
            self.rx_filler.want_read(conn)
        self.rx_filler.fill()

    def host_gone(self, conn: VsockConnection, exc: OSError) -> None:
        log.debug("host side of %d:%d gone: %s", conn.local_port, conn.peer_port, exc)
        self.reset_connection(conn)

    def reset_connection(self, conn: VsockConnection) -> None:
        """Tell the guest the connection is over (RST) and drop it."""
        self.rx_filler.send_control(conn, Op.RST)
        self.drop(conn)

    def drop(self, conn: VsockConnection) -> None:
        """Forget the connection and close its host socket (no packet to the guest)."""
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        timer = self._timers.pop(conn.key, None)
        if timer is not None:
            timer.cancel()
        if self.worker is not None:
            self.worker.unwatch(conn.fd)
        conn.watching_read = conn.watching_write = False
        conn.ready = False  # fill() skips it
        self.tx_interpreter.touched.discard(conn)
        conn.close()

    def check_credit(self, conn: VsockConnection) -> None:
        """Send a CREDIT_UPDATE if the guest's view of our buffer is due one."""
        if (
            conn.state == State.ESTABLISHED
            and self.conns.get(conn.key) is conn
            and conn.credit.update_due(conn.held_bytes + len(conn.message))
        ):
            self.rx_filler.send_control(conn, Op.CREDIT_UPDATE)

    def complain(self, message: str, *args: object) -> None:
        """Log a guest's misbehaviour; rate-limited, since a guest can repeat it."""
        self._complaints += 1
        count = self._complaints
        if count <= 10 or count % 1000 == 0:
            suffix = f" ({count} so far)" if count > 10 else ""
            log.warning("CID %d: " + message + suffix, self.cid, *args)
