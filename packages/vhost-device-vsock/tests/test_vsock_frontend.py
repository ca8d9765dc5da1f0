"""vhost-device-vsock driven by the Python frontend playing the guest driver, with real
Unix sockets on the host side: connection set-up both ways, data, credit, half-close,
reset, SEQPACKET and hostile packets."""

from __future__ import annotations

import errno
import os
import resource
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vsock_daemon import DAEMON, Vm, VsockDaemon, running_daemon

from vhost_device_vsock.device import MAX_CONNECTIONS
from vhost_device_vsock.packet import HEADER_SIZE, Header, Op, SeqFlag, Shutdown, SocketType
from vhost_device_vsock.testing import Packet, VsockDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process, recv_exactly
from vhost_user_core.testing.procstat import cpu_seconds

CID = 3
GUEST_PORT = 40000


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[VsockDaemon]:
    with running_daemon(tmp_path, (CID,), tx_buffer_size=65536) as d:
        yield d


@pytest.fixture
def vm(daemon: VsockDaemon) -> Vm:
    return daemon.vms[0]


@pytest.fixture
def guest(vm: Vm) -> Iterator[VsockDriver]:
    with Frontend.connect(vm.socket) as frontend:
        yield VsockDriver(frontend, CID)


def connect_to_host(
    guest: VsockDriver, port: int, guest_port: int = GUEST_PORT, **kw: int
) -> Packet:
    """Send a REQUEST; the device's answer (packets for other connections skipped)."""
    guest.send(guest.header(guest_port, port, Op.REQUEST, **kw))
    while True:
        packet = guest.recv()
        if packet.header.dst_port == guest_port:
            return packet


def open_stream(
    guest: VsockDriver, vm: Vm, port: int = 1234
) -> tuple[socket.socket, socket.socket]:
    """A guest->host connection: (the host listener, the host's accepted socket)."""
    listener = vm.listen(port)
    reply = connect_to_host(guest, port)
    assert reply.op == Op.RESPONSE, reply.header.describe()
    host, _ = listener.accept()
    host.settimeout(10)
    return listener, host


def test_config_space_and_features(vm: Vm) -> None:
    with Frontend.connect(vm.socket) as frontend:
        assert frontend.get_features() & (1 << 1), "SEQPACKET offered"
        driver = VsockDriver(frontend, CID)
        assert struct.unpack("<Q", driver.frontend.get_config(0, 8)) == (CID,)


def test_guest_connects_to_host_and_data_flows_both_ways(guest: VsockDriver, vm: Vm) -> None:
    listener, host = open_stream(guest, vm)
    response = guest.received or None
    assert response is None
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=5), b"hello")
    assert recv_exactly(host, 5) == b"hello"
    host.sendall(b"world!")
    packet = guest.expect(Op.RW)
    hdr = packet.header
    assert packet.payload == b"world!"
    assert (hdr.src_cid, hdr.dst_cid, hdr.src_port, hdr.dst_port) == (2, CID, 1234, GUEST_PORT)
    assert hdr.len == 6 and hdr.buf_alloc == 65536
    listener.close()
    host.close()


def test_unreachable_host_port_is_reset(guest: VsockDriver) -> None:
    reply = connect_to_host(guest, 999)
    assert reply.op == Op.RST
    assert (reply.header.src_port, reply.header.dst_port) == (999, GUEST_PORT)


def test_host_connects_to_guest(guest: VsockDriver, vm: Vm) -> None:
    host = vm.connect(5000, early=b"early bytes")
    request = guest.expect(Op.REQUEST).header
    assert (request.src_cid, request.dst_cid, request.dst_port) == (2, CID, 5000)
    assert request.src_port >= 1 << 30
    guest.send(guest.header(5000, request.src_port, Op.RESPONSE))
    assert host.makefile("rb").readline() == f"OK {request.src_port}\n".encode()
    # What the host wrote right after CONNECT reaches the guest, and nothing before
    # it: no empty packet after the accept (upstream #963).
    packet = guest.expect(Op.RW)
    assert packet.payload == b"early bytes"
    host.sendall(b"more")
    assert guest.expect(Op.RW).payload == b"more"
    assert guest.quiet() == []
    guest.send(guest.header(5000, request.src_port, Op.RW, length=3), b"abc")
    assert recv_exactly(host, 3) == b"abc"


@pytest.mark.parametrize(
    "line", [b"CONNECT\n", b"CONNECT x\n", b"HELLO 5\n", b"CONNECT 99999999999\n", b"C" * 40]
)
def test_host_garbage_instead_of_connect_is_hung_up(
    guest: VsockDriver, vm: Vm, line: bytes
) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(vm.uds))
    sock.sendall(line)
    assert sock.recv(100) == b""
    assert guest.quiet() == []


def test_host_connect_split_over_writes(guest: VsockDriver, vm: Vm) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(vm.uds))
    for piece in (b"CONN", b"ECT 7", b"7\n"):
        sock.sendall(piece)
    assert guest.expect(Op.REQUEST).header.dst_port == 77


def test_guest_refusing_resets_the_host(guest: VsockDriver, vm: Vm) -> None:
    host = vm.connect(6000)
    request = guest.expect(Op.REQUEST).header
    guest.send(guest.header(6000, request.src_port, Op.RST))
    assert host.recv(100) == b""


def test_credit_limits_host_to_guest_and_updates_resume_it(guest: VsockDriver, vm: Vm) -> None:
    listener = vm.listen(1234)
    connect_to_host(guest, 1234, buf_alloc=1000)
    host, _ = listener.accept()
    data = os.urandom(5000)
    host.sendall(data)
    got = b""
    while len(got) < 1000:
        got += guest.expect(Op.RW).payload
    assert got == data[:1000]
    assert guest.quiet() == [], "sent beyond the credit"
    guest.send(guest.header(GUEST_PORT, 1234, Op.CREDIT_UPDATE, buf_alloc=1000, fwd_cnt=1000))
    while len(got) < 2000:
        got += guest.expect(Op.RW).payload
    assert got == data[:2000]
    assert guest.quiet() == []
    # A bigger window lets the rest through.
    guest.send(guest.header(GUEST_PORT, 1234, Op.CREDIT_UPDATE, buf_alloc=1 << 20, fwd_cnt=2000))
    while len(got) < 5000:
        got += guest.expect(Op.RW).payload
    assert got == data


@pytest.mark.parametrize("blocked_by", ["credit", "rx-buffers"])
def test_host_data_the_guest_cannot_take_waits_without_spinning(
    daemon: VsockDaemon, vm: Vm, blocked_by: str
) -> None:
    """Host data stays in its socket, and the worker sleeps, while the guest has no
    credit or no rx buffers for it; it all arrives once the guest has."""
    with Frontend.connect(vm.socket) as frontend:
        guest = VsockDriver(frontend, CID, rx_count=1 if blocked_by == "rx-buffers" else None)
        listener = vm.listen(1234)
        window = 1000 if blocked_by == "credit" else 1 << 20
        assert connect_to_host(guest, 1234, buf_alloc=window).op == Op.RESPONSE
        host, _ = listener.accept()
        data = os.urandom(100_000)
        host.sendall(data)
        time.sleep(0.3)
        before = cpu_seconds(daemon.pid)
        time.sleep(1.0)
        assert cpu_seconds(daemon.pid) - before < 0.1, "the worker spins"
        update = guest.header(GUEST_PORT, 1234, Op.CREDIT_UPDATE, buf_alloc=1 << 20)
        guest.send(update)  # and receiving re-posts the rx buffers
        got = b""
        while len(got) < len(data):
            got += guest.expect(Op.RW).payload
        assert got == data


def test_credit_request_is_answered(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.CREDIT_REQUEST))
    update = guest.expect(Op.CREDIT_UPDATE).header
    assert update.buf_alloc == 65536 and update.fwd_cnt == 0


def test_large_guest_to_host_transfer_never_waits_for_credit_forever(
    guest: VsockDriver, vm: Vm
) -> None:
    """16 MiB through a 64 KiB window: the guest only sends within the credit the
    device advertised, so every update it needs must come (upstream #494)."""
    _, host = open_stream(guest, vm)
    total = 16 << 20
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(host, total)))
    reader.start()
    block = os.urandom(65536)
    sent = 0
    fwd_cnt = 0
    buf_alloc = 65536
    while sent < total:
        room = buf_alloc - (sent - fwd_cnt)
        if room == 0:
            packet = guest.recv(timeout=10)
            assert packet.op in (Op.CREDIT_UPDATE, Op.RW), packet.header.describe()
            fwd_cnt, buf_alloc = packet.header.fwd_cnt, packet.header.buf_alloc
            continue
        n = min(room, 16384, total - sent)
        offset = sent % 65536
        chunk = (block + block)[offset : offset + n]
        guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=n), chunk)
        sent += n
    reader.join(30)
    assert len(received) == total
    expected = (block * (total // 65536 + 1))[:total]
    assert received == expected


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([10, 30, 7], id="header-split"),
        pytest.param([1] * HEADER_SIZE + [3] * 100, id="bytes-then-small-pieces"),
        # More pieces than one sendmsg takes: the rest is held, then flushed.
        pytest.param([HEADER_SIZE - 4] + [2] * 300, id="more-than-256-pieces"),
    ],
)
def test_data_split_anywhere_across_descriptors_arrives_intact(vm: Vm, sizes: list[int]) -> None:
    with Frontend.connect(vm.socket) as frontend:
        guest = VsockDriver(frontend, CID, queue_size=1024)
        _, host = open_stream(guest, vm)
        payload = os.urandom(1000)
        header = guest.header(GUEST_PORT, 1234, Op.RW, length=len(payload)).encode()
        guest.send_pieces(header + payload, sizes)
        assert recv_exactly(host, len(payload)) == payload
        guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=4), b"next")
        assert recv_exactly(host, 4) == b"next"


def _read_all(sock: socket.socket, total: int) -> bytes:
    data = bytearray()
    while len(data) < total:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def test_guest_ignoring_credit_is_reset(guest: VsockDriver, vm: Vm) -> None:
    listener = vm.listen(1234)
    connect_to_host(guest, 1234)
    host, _ = listener.accept()  # never reads: the socket buffer fills, then ours
    block = b"x" * 65536
    reset = None
    for _ in range(64):
        guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=len(block)), block)
        guest.wait_tx_done()  # the device queues its RST before it completes the packet
        guest.poll()
        reset = next((p for p in guest.received if p.op == Op.RST), None)
        if reset:
            break
    assert reset is not None, "the device kept buffering beyond the credit"


def test_guest_half_close_reaches_host_which_can_still_answer(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=4), b"ping")
    guest.send(guest.header(GUEST_PORT, 1234, Op.SHUTDOWN, flags=Shutdown.SEND))
    assert _read_all(host, 100) == b"ping"  # then EOF
    host.sendall(b"pong")
    assert guest.expect(Op.RW).payload == b"pong"
    host.shutdown(socket.SHUT_WR)
    shutdown = guest.expect(Op.SHUTDOWN)
    assert shutdown.header.flags == Shutdown.SEND
    guest.send(guest.header(GUEST_PORT, 1234, Op.SHUTDOWN, flags=Shutdown.BOTH))
    guest.expect(Op.RST)


def test_host_half_close_reaches_guest_which_can_still_send(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    host.sendall(b"last words")
    host.shutdown(socket.SHUT_WR)
    assert guest.expect(Op.RW).payload == b"last words"
    assert guest.expect(Op.SHUTDOWN).header.flags == Shutdown.SEND
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=5), b"reply")
    assert recv_exactly(host, 5) == b"reply"


def test_guest_close_flushes_then_resets(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=3), b"bye")
    guest.send(guest.header(GUEST_PORT, 1234, Op.SHUTDOWN, flags=Shutdown.BOTH))
    guest.expect(Op.RST)
    assert _read_all(host, 100) == b"bye"


def test_guest_reset_closes_the_host_socket(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RST))
    assert host.recv(10) == b""


def shutdown_flags(guest: VsockDriver, count: int) -> int:
    """The flags of the next `count` packets, which must be SHUTDOWNs, together."""
    flags = 0
    for _ in range(count):
        flags |= guest.expect(Op.SHUTDOWN, timeout=2).header.flags
    return flags


def test_host_close_reaches_the_guest_as_both_shutdowns_at_once(guest: VsockDriver, vm: Vm) -> None:
    """A close is seen as a hang-up: the guest hears that the host will neither send
    (its EOF, after its last bytes) nor read, before the guest sends anything."""
    _, host = open_stream(guest, vm)
    host.sendall(b"last words")
    host.close()
    assert guest.expect(Op.RW).payload == b"last words"
    assert shutdown_flags(guest, 2) == Shutdown.BOTH
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=1), b"?")
    guest.expect(Op.RST)  # a guest that sends anyway is reset


def test_host_shutting_reading_after_its_eof_reaches_the_idle_guest(
    guest: VsockDriver, vm: Vm
) -> None:
    """After the host's EOF its socket is no longer read; its later SHUT_RD makes
    both directions shut, a hang-up the daemon hears all the same."""
    _, host = open_stream(guest, vm)
    host.shutdown(socket.SHUT_WR)
    assert guest.expect(Op.SHUTDOWN).header.flags == Shutdown.SEND
    assert guest.quiet(0.2) == []
    host.shutdown(socket.SHUT_RD)
    assert guest.expect(Op.SHUTDOWN, timeout=2).header.flags == Shutdown.RCV


def test_host_shutting_only_reading_is_seen_at_the_next_send(guest: VsockDriver, vm: Vm) -> None:
    """A lone SHUT_RD shows on no poll flag of a Unix stream socket, only as EPIPE
    on a send: the guest's next data gets an RST."""
    _, host = open_stream(guest, vm)
    host.shutdown(socket.SHUT_RD)
    assert guest.quiet(0.2) == []
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=1), b"?")
    guest.expect(Op.RST)


def test_many_connections_at_once(guest: VsockDriver, vm: Vm) -> None:
    listener = vm.listen(1234)
    for i in range(100):
        guest.send(guest.header(GUEST_PORT + i, 1234, Op.REQUEST), publish=False)
    guest.tx.publish()
    hosts = [listener.accept()[0] for _ in range(100)]
    ports = sorted(guest.expect(Op.RESPONSE).header.dst_port for _ in range(100))
    assert ports == [GUEST_PORT + i for i in range(100)]
    for i in range(100):
        guest.send(guest.header(GUEST_PORT + i, 1234, Op.RW, length=4), struct.pack("<I", i))
    seen = sorted(struct.unpack("<I", recv_exactly(h, 4))[0] for h in hosts)
    assert seen == list(range(100))


def test_stuck_host_peer_does_not_stall_other_connections(guest: VsockDriver, vm: Vm) -> None:
    stuck_listener = vm.listen(1111)
    connect_to_host(guest, 1111, guest_port=1)
    stuck, _ = stuck_listener.accept()  # never reads
    block = b"s" * 16384
    for _ in range(8):  # fill the device's buffer for it, within the credit
        guest.send(guest.header(1, 1111, Op.RW, length=len(block)), block)
    _, host = open_stream(guest, vm, 2222)
    guest.send(guest.header(GUEST_PORT, 2222, Op.RW, length=2), b"ok")
    assert recv_exactly(host, 2) == b"ok"
    host.sendall(b"fine")
    assert guest.expect(Op.RW).payload == b"fine"


def test_seqpacket_keeps_message_boundaries(guest: VsockDriver, vm: Vm) -> None:
    listener = vm.listen(4321, socket.SOCK_SEQPACKET)
    reply = connect_to_host(guest, 4321, sock_type=SocketType.SEQPACKET)
    assert reply.op == Op.RESPONSE
    host, _ = listener.accept()
    host.settimeout(5)
    seq = dict(sock_type=SocketType.SEQPACKET)
    for part, flags in ((b"one-", 0), (b"message", SeqFlag.EOM), (b"two", SeqFlag.EOM)):
        guest.send(
            guest.header(GUEST_PORT, 4321, Op.RW, length=len(part), flags=flags, **seq), part
        )
    assert host.recv(100) == b"one-message"
    assert host.recv(100) == b"two"
    big = os.urandom(10000)
    host.send(big)
    host.send(b"small")
    pieces = []
    while True:
        packet = guest.expect(Op.RW)
        pieces.append(packet.payload)
        if packet.header.flags & SeqFlag.EOM:
            break
    assert b"".join(pieces) == big and len(pieces) > 1  # 4 KiB rx buffers
    small = guest.expect(Op.RW)
    assert small.payload == b"small" and small.header.flags & SeqFlag.EOM


def test_seqpacket_refused_when_not_negotiated(vm: Vm) -> None:
    with Frontend.connect(vm.socket) as frontend:
        guest = VsockDriver(frontend, CID, seqpacket=False)
        vm.listen(4321, socket.SOCK_SEQPACKET)
        reply = connect_to_host(guest, 4321, sock_type=SocketType.SEQPACKET)
        assert reply.op == Op.RST


# Hostile packets: each is dropped or answered with an RST, and the device keeps
# serving (the last step of each test opens a working connection).
def assert_still_serving(guest: VsockDriver, vm: Vm, port: int = 7777) -> None:
    _, host = open_stream(guest, vm, port)
    host.sendall(b"alive")
    assert guest.expect(Op.RW).payload == b"alive"


def test_spoofed_source_cid_is_dropped(guest: VsockDriver, vm: Vm) -> None:
    listener = vm.listen(1234)
    listener.settimeout(0.3)
    guest.send(guest.header(GUEST_PORT, 1234, Op.REQUEST, src_cid=CID + 1))
    assert guest.quiet() == []
    with pytest.raises(TimeoutError):
        listener.accept()
    assert_still_serving(guest, vm)


@pytest.mark.parametrize("size", [0, 1, HEADER_SIZE - 1])
def test_short_header_is_dropped(guest: VsockDriver, vm: Vm, size: int) -> None:
    guest.send_raw(b"\x01" * size if size else b"")
    assert guest.quiet() == []
    assert_still_serving(guest, vm)


def test_len_beyond_the_buffer_is_reset(guest: VsockDriver, vm: Vm) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=100), b"short")
    guest.expect(Op.RST)
    assert host.recv(10) == b"", "the connection was reset on the host side too"
    assert_still_serving(guest, vm)


@pytest.mark.parametrize("op", [0, 8, 0xFFFF])
def test_unknown_op_resets_the_connection(guest: VsockDriver, vm: Vm, op: int) -> None:
    _, host = open_stream(guest, vm)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW)._replace(op=op))
    guest.expect(Op.RST)
    assert host.recv(10) == b""
    assert_still_serving(guest, vm)


def test_unknown_socket_type_is_reset(guest: VsockDriver, vm: Vm) -> None:
    vm.listen(1234)
    reply = connect_to_host(guest, 1234, sock_type=7)  # type: ignore[arg-type]
    assert reply.op == Op.RST
    assert_still_serving(guest, vm)


def test_data_for_no_connection_is_reset(guest: VsockDriver, vm: Vm) -> None:
    guest.send(guest.header(GUEST_PORT, 1234, Op.RW, length=3), b"abc")
    guest.expect(Op.RST)
    guest.send(guest.header(GUEST_PORT, 1234, Op.RST))  # never answered
    assert guest.quiet() == []
    assert_still_serving(guest, vm)


def test_unknown_destination_cid_is_reset(guest: VsockDriver, vm: Vm) -> None:
    reply = connect_to_host(guest, 1234, dst_cid=99)
    assert reply.op == Op.RST and reply.header.src_cid == 99
    assert_still_serving(guest, vm)


def test_reconnect_starts_afresh(vm: Vm) -> None:
    for i in range(2):
        with Frontend.connect(vm.socket) as frontend:
            guest = VsockDriver(frontend, CID)
            assert_still_serving(guest, vm, 7777 + i)


def test_header_round_trip() -> None:
    hdr = Header(3, 2, 1, 4, 5, 1, 5, 0, 65536, 7)
    assert Header.decode(hdr.encode()) == hdr
    assert len(hdr.encode()) == HEADER_SIZE


def test_forward_mode_resets_a_connection_the_host_cannot_make(tmp_path: Path) -> None:
    """--forward-cid relays over the host's AF_VSOCK. This machine has AF_VSOCK but no
    transport to connect through, so the connect fails (after its 2 s timeout) and the
    guest must get an RST, not wait forever; the --forward-listen port is bound."""
    sock = tmp_path / "fwd.sock"
    argv = [*DAEMON, "--guest-cid", "3", "--socket", str(sock), "--forward-cid", "1"]
    with daemon_process(
        [*argv, "--forward-listen", "7070"], log=tmp_path / "fwd.log", sockets=[sock]
    ):
        probe = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        with pytest.raises(OSError) as taken:
            probe.bind((socket.VMADDR_CID_ANY, 7070))
        assert taken.value.errno == errno.EADDRINUSE
        probe.close()
        with Frontend.connect(sock) as frontend:
            guest = VsockDriver(frontend, CID)
            guest.send(guest.header(GUEST_PORT, 5555, Op.REQUEST))
            reset = guest.recv(timeout=10)
            assert reset.op == Op.RST and reset.header.dst_port == GUEST_PORT


def test_connection_flood_is_bounded(guest: VsockDriver, vm: Vm) -> None:
    """A guest opening connections without end gets RSTs beyond the per-VM limit,
    and the device keeps serving once it closes some."""
    extra = 20
    total = MAX_CONNECTIONS + extra
    listener = vm.listen(1234)
    # A backlog for all of them: the device's connect must not fail because the
    # accepting thread (sharing this process's GIL with the guest) fell behind.
    listener.listen(total)
    accepted: list[socket.socket] = []

    def accept_all() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:
            pass  # the listener closed at the end of the test

    threading.Thread(target=accept_all, daemon=True).start()
    answers: dict[int, int] = {}
    for start in range(0, total, 64):
        ports = range(start, min(start + 64, total))
        for i in ports:
            guest.send(guest.header(10000 + i, 1234, Op.REQUEST), publish=False)
        guest.tx.publish()
        while len(answers) < ports[-1] + 1:
            packet = guest.recv()
            answers[packet.header.dst_port - 10000] = packet.op
    ops = list(answers.values())
    assert ops.count(Op.RESPONSE) == MAX_CONNECTIONS
    assert ops.count(Op.RST) == extra
    for i in range(64):  # close a few; new connections work again
        guest.send(guest.header(10000 + i, 1234, Op.RST), publish=False)
    guest.tx.publish()
    assert_still_serving(guest, vm)
    listener.close()


def test_out_of_fds_does_not_spin_or_crash(tmp_path: Path) -> None:
    """With its open-file limit at 40, the daemon runs out of fds under a flood of
    host connections: it must neither spin on the listener nor die, and must serve
    again once the flood is gone."""
    vm = Vm(3, tmp_path / "fd.sock", tmp_path / "fd.vsock")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    log = tmp_path / "fd.log"
    argv = [*DAEMON, "--socket", str(vm.socket), "--uds-path", str(vm.uds)]
    with daemon_process(argv, log=log, sockets=[vm.socket], preexec_fn=low_limit) as proc:
        with Frontend.connect(vm.socket) as frontend:
            guest = VsockDriver(frontend, CID)
            flood = []
            for _ in range(60):
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(vm.uds))  # queued in the backlog if not accepted
                flood.append(sock)
            time.sleep(0.5)
            before = cpu_seconds(proc.pid)
            time.sleep(1.0)
            assert cpu_seconds(proc.pid) - before < 0.2, "the daemon spins"
            for sock in flood:
                sock.close()
            time.sleep(1.5)  # past the accept retry
            assert_still_serving(guest, vm)
    assert "retrying in 1 s" in log.read_text()
