"""The AF_VSOCK backend (`--forward-cid`, `--forward-listen`) against a real kernel:
inside a hostkernel guest with `vsock_loopback`, CID 1 is this kernel itself, so the
daemon's AF_VSOCK connections and listeners meet real AF_VSOCK sockets of the test.
The core's Python frontend plays the guest driver (CID 3)."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from vsock_daemon import DAEMON

from vhost_device_vsock.packet import Op, Shutdown
from vhost_device_vsock.testing import Packet, VsockDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process, recv_exactly

pytestmark = pytest.mark.hostkernel("vsock_loopback")

CID = 3
GUEST_PORT = 40000
#: The daemon listens here (--forward-listen); connections lead to the guest's port.
LISTEN_PORTS = (7070, 7071)
#: The daemon's --tx-buffer-size: the credit the guest gets.
TX_BUFFER = 65536
TIMEOUT = 20.0
#: VMADDR_CID_LOCAL (Python 3.11's socket module does not name it).
CID_LOCAL = 1


@pytest.fixture(scope="module")
def daemon_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One daemon for the module (each test connects afresh, which resets the device)."""
    tmp = tmp_path_factory.mktemp("vsock-forward")
    sock = tmp / "fwd.sock"
    argv = [*DAEMON, "--guest-cid", str(CID), "--socket", str(sock), "--forward-cid", "1"]
    argv += ["--forward-listen", "+".join(map(str, LISTEN_PORTS))]
    argv += ["--tx-buffer-size", str(TX_BUFFER)]
    with daemon_process(argv, log=tmp / "fwd.log", sockets=[sock]):
        yield sock


@pytest.fixture
def guest(daemon_socket: Path) -> Iterator[VsockDriver]:
    with Frontend.connect(daemon_socket) as frontend:
        yield VsockDriver(frontend, CID)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A host AF_VSOCK listener on an unused port (what --forward-cid 1 reaches)."""
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    sock.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
    sock.listen(8)
    sock.settimeout(TIMEOUT)
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def next_packet(guest: VsockDriver, port: int = GUEST_PORT) -> Packet:
    """The next packet for the guest's `port` (credit updates are skipped)."""
    while True:
        packet = guest.recv(TIMEOUT)
        if packet.header.dst_port == port and packet.op != Op.CREDIT_UPDATE:
            return packet


def expect(guest: VsockDriver, op: Op, port: int = GUEST_PORT) -> Packet:
    packet = next_packet(guest, port)
    assert packet.op == op, f"expected {op.name}, got {packet.header.describe()}"
    return packet


def guest_connects(guest: VsockDriver, listener: socket.socket) -> tuple[int, socket.socket]:
    """A guest connection to the host listener's port, through the daemon's AF_VSOCK
    connect to CID 1: (the host port, the host's accepted socket)."""
    port = port_of(listener)
    guest.send(guest.header(GUEST_PORT, port, Op.REQUEST))
    reply = next_packet(guest)
    assert reply.op == Op.RESPONSE, reply.header.describe()
    assert (reply.header.src_cid, reply.header.src_port) == (2, port)
    host, peer = listener.accept()
    host.settimeout(TIMEOUT)
    assert peer[0] == CID_LOCAL  # the daemon, through the loopback
    return port, host


def host_connects(guest: VsockDriver, listen_port: int) -> tuple[int, socket.socket]:
    """A host AF_VSOCK client to the daemon's --forward-listen port, accepted by the
    guest: (the guest-side source port the device chose, the client socket)."""
    client = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    client.settimeout(TIMEOUT)
    client.connect((CID_LOCAL, listen_port))
    request = guest.expect(Op.REQUEST, TIMEOUT).header
    assert (request.src_cid, request.dst_cid, request.dst_port) == (2, CID, listen_port)
    guest.send(guest.header(listen_port, request.src_port, Op.RESPONSE))
    return request.src_port, client


def test_guest_to_host_data_both_ways_and_half_close_each_way(
    guest: VsockDriver, listener: socket.socket
) -> None:
    port, host = guest_connects(guest, listener)
    guest.send(guest.header(GUEST_PORT, port, Op.RW, length=5), b"hello")
    assert recv_exactly(host, 5) == b"hello"
    host.sendall(b"world!")
    assert expect(guest, Op.RW).payload == b"world!"
    # The guest stops sending: the host reads EOF and can still answer.
    guest.send(guest.header(GUEST_PORT, port, Op.SHUTDOWN, flags=Shutdown.SEND))
    assert host.recv(100) == b""
    host.sendall(b"still here")
    assert expect(guest, Op.RW).payload == b"still here"
    # Then the host stops too: the guest hears SHUTDOWN(SEND), closes, gets the RST.
    host.shutdown(socket.SHUT_WR)
    assert expect(guest, Op.SHUTDOWN).header.flags == Shutdown.SEND
    guest.send(guest.header(GUEST_PORT, port, Op.SHUTDOWN, flags=Shutdown.BOTH))
    expect(guest, Op.RST)
    host.close()


def test_host_half_close_first_and_the_guest_still_sends(
    guest: VsockDriver, listener: socket.socket
) -> None:
    port, host = guest_connects(guest, listener)
    host.sendall(b"last words")
    host.shutdown(socket.SHUT_WR)
    assert expect(guest, Op.RW).payload == b"last words"
    assert expect(guest, Op.SHUTDOWN).header.flags == Shutdown.SEND
    guest.send(guest.header(GUEST_PORT, port, Op.RW, length=5), b"reply")
    assert recv_exactly(host, 5) == b"reply"
    host.close()


def test_guest_reset_ends_the_host_socket(guest: VsockDriver, listener: socket.socket) -> None:
    port, host = guest_connects(guest, listener)
    guest.send(guest.header(GUEST_PORT, port, Op.RW, length=3), b"abc")
    assert recv_exactly(host, 3) == b"abc"
    guest.send(guest.header(GUEST_PORT, port, Op.RST))
    try:
        assert host.recv(100) == b""
    except ConnectionResetError:
        pass  # the kernel may report the peer's reset as such
    host.close()


def test_host_close_reaches_the_guest_as_shutdown_then_reset(
    guest: VsockDriver, listener: socket.socket
) -> None:
    port, host = guest_connects(guest, listener)
    host.close()
    assert expect(guest, Op.SHUTDOWN).header.flags == Shutdown.SEND
    guest.send(guest.header(GUEST_PORT, port, Op.RW, length=1), b"?")
    expect(guest, Op.RST)


def test_connection_to_a_port_nobody_listens_on_is_reset_by_the_kernel(
    guest: VsockDriver, listener: socket.socket
) -> None:
    free_port = port_of(listener)
    listener.close()  # now nothing listens there
    guest.send(guest.header(GUEST_PORT, free_port, Op.REQUEST))
    reply = next_packet(guest)
    assert reply.op == Op.RST and reply.header.src_port == free_port


def test_bulk_data_both_ways_through_the_credit_windows(
    guest: VsockDriver, listener: socket.socket
) -> None:
    """1 MiB each way: the guest sends only within the credit the daemon grants (its
    64 KiB tx buffer) and the host only within the guest's 256 KiB window."""
    port, host = guest_connects(guest, listener)
    total = 1 << 20
    upstream, downstream = os.urandom(total), os.urandom(total)
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(recv_exactly(host, total)))
    reader.start()
    sent = fwd_cnt = 0
    buf_alloc = TX_BUFFER
    while sent < total:
        room = buf_alloc - (sent - fwd_cnt)
        if room == 0:
            packet = guest.recv(TIMEOUT)
            assert packet.op == Op.CREDIT_UPDATE, packet.header.describe()
            fwd_cnt, buf_alloc = packet.header.fwd_cnt, packet.header.buf_alloc
            continue
        n = min(room, 16384, total - sent)
        guest.send(guest.header(GUEST_PORT, port, Op.RW, length=n), upstream[sent : sent + n])
        sent += n
    reader.join(TIMEOUT)
    assert received == upstream

    window = 256 * 1024  # what the guest's REQUEST advertised
    writer = threading.Thread(target=host.sendall, args=(downstream,))
    writer.start()
    got = bytearray()
    granted = 0
    while len(got) < total:
        packet = next_packet(guest)
        assert packet.op == Op.RW, packet.header.describe()
        got += packet.payload
        if len(got) - granted >= window // 2:  # as Linux: update once half is read
            granted = len(got)
            guest.send(
                guest.header(GUEST_PORT, port, Op.CREDIT_UPDATE, buf_alloc=window, fwd_cnt=granted)
            )
    writer.join(TIMEOUT)
    assert got == downstream


def test_host_client_to_forward_listen_port_data_both_ways_and_half_close(
    guest: VsockDriver,
) -> None:
    listen_port = LISTEN_PORTS[1]
    src_port, client = host_connects(guest, listen_port)
    client.sendall(b"ping")
    assert expect(guest, Op.RW, port=listen_port).payload == b"ping"
    guest.send(guest.header(listen_port, src_port, Op.RW, length=4), b"pong")
    assert recv_exactly(client, 4) == b"pong"
    # The guest stops sending: the client reads EOF and can still send.
    guest.send(guest.header(listen_port, src_port, Op.SHUTDOWN, flags=Shutdown.SEND))
    assert client.recv(100) == b""
    client.sendall(b"more")
    assert expect(guest, Op.RW, port=listen_port).payload == b"more"
    # The client stops: the guest hears it, closes, and the device resets.
    client.shutdown(socket.SHUT_WR)
    assert expect(guest, Op.SHUTDOWN, port=listen_port).header.flags == Shutdown.SEND
    guest.send(guest.header(listen_port, src_port, Op.SHUTDOWN, flags=Shutdown.BOTH))
    expect(guest, Op.RST, port=listen_port)
    client.close()


def test_guest_refusing_a_host_client_resets_it(guest: VsockDriver) -> None:
    listen_port = LISTEN_PORTS[0]
    client = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    client.settimeout(TIMEOUT)
    client.connect((CID_LOCAL, listen_port))
    request = guest.expect(Op.REQUEST, TIMEOUT).header
    guest.send(guest.header(listen_port, request.src_port, Op.RST))
    try:
        assert client.recv(100) == b""
    except ConnectionResetError:
        pass
    client.close()


def test_guest_reset_of_an_accepted_host_client_ends_it(guest: VsockDriver) -> None:
    listen_port = LISTEN_PORTS[0]
    src_port, client = host_connects(guest, listen_port)
    client.sendall(b"x")
    assert expect(guest, Op.RW, port=listen_port).payload == b"x"
    guest.send(guest.header(listen_port, src_port, Op.RST))
    try:
        assert client.recv(100) == b""
    except ConnectionResetError:
        pass
    with pytest.raises(OSError) as sending:
        for _ in range(100):  # the reset must reach the client's send side too
            client.send(b"y" * 4096)
    assert sending.value.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)
    client.close()
