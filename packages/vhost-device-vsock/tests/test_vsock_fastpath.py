"""The C data path (`_datapath`: `TxFastPath`, `RxFastPath`, `HostReader`) against the
Python path: the same traffic through a backend with it and one without; the host and
the guest must get the same bytes and the same packets (credit updates aside, whose
number depends on how kicks fall into batches), and the C path must have served the
plain packets. Hostile packets and buffers in the middle of plain traffic go through
it too: each gets the Python path's answer, and the next packet is served."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vhost_device_vsock.config import VmConfig
from vhost_device_vsock.device import VsockBackend
from vhost_device_vsock.packet import HEADER_SIZE, Header, Op, Shutdown
from vhost_device_vsock.testing import Packet, VsockDriver
from vhost_device_vsock.vm import SiblingMap, VirtualMachine
from vhost_user_core.testing.harness import connected_frontend, recv_exactly, wait_idle

CID = 3
GUEST_PORT = 40000
HOST_PORT = 1234
BUFFER = 65536  # the device's --tx-buffer-size
GUEST_BUF_ALLOC = 256 * 1024


class Guest:
    """A frontend guest of an in-process backend, with one connection to a host
    listener: the driver, the backend and the host's accepted socket."""

    def __init__(self, driver: VsockDriver, backend: VsockBackend, host: socket.socket) -> None:
        self.driver, self.backend, self.host = driver, backend, host
        self.fwd_cnt = 0  # the device's, from its last header
        self.buf_alloc = BUFFER
        self.sent = 0

    def header(self, op: Op, **kw: int) -> Header:
        kw.setdefault("buf_alloc", GUEST_BUF_ALLOC)
        return self.driver.header(GUEST_PORT, HOST_PORT, op, **kw)

    def note(self, packet: Packet) -> Packet:
        if packet.header.dst_port == GUEST_PORT:
            self.fwd_cnt, self.buf_alloc = packet.header.fwd_cnt, packet.header.buf_alloc
        return packet

    def send_data(self, payload: bytes, pieces: list[int] | None = None) -> None:
        """Data packets within the device's credit, as a Linux guest sends them: as
        much as the credit allows, waiting for an update only when it is used up."""
        while payload:
            room = self.buf_alloc - (self.sent - self.fwd_cnt)
            if room <= 0:
                self.note(self.driver.recv())
                continue
            part, payload = payload[:room], payload[room:]
            self.driver.reap_tx()  # descriptors back for the next chain
            packet = self.header(Op.RW, length=len(part)).encode() + part
            self.driver.send_pieces(packet, pieces or [HEADER_SIZE])
            self.sent += len(part)

    @property
    def served_in_c(self) -> int:
        tx_fast = self.backend.tx_fast
        return 0 if tx_fast is None else tx_fast.packets


@contextmanager
def guest(tmp_path: Path, *, fast: bool, rx_buffer: int = HEADER_SIZE + 4096) -> Iterator[Guest]:
    where = tmp_path / ("fast" if fast else "python")
    where.mkdir(parents=True)
    uds = where / "uds"
    config = VmConfig(
        guest_cid=CID, socket=str(where / "vhost.sock"), uds_path=str(uds), tx_buffer_size=BUFFER
    )
    vm = VirtualMachine(config, SiblingMap())
    backends: list[VsockBackend] = []

    def factory() -> VsockBackend:
        backends.append(VsockBackend(vm, fast=fast))
        return backends[-1]

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(f"{uds}_{HOST_PORT}")
    listener.listen(1)
    listener.settimeout(10)
    with listener, connected_frontend(factory, config.socket) as frontend:
        driver = VsockDriver(frontend, CID, queue_size=1024, rx_buffer=rx_buffer, rx_count=64)
        driver.send(driver.header(GUEST_PORT, HOST_PORT, Op.REQUEST, buf_alloc=GUEST_BUF_ALLOC))
        response = driver.expect(Op.RESPONSE)
        # The RESPONSE comes while the worker may still be in the Python tx loop that
        # sent it, which would take the next packets too; the C path is for new kicks.
        worker = backends[-1].worker
        assert worker is not None
        wait_idle(worker)
        host, _ = listener.accept()
        host.settimeout(10)
        with host:
            g = Guest(driver, backends[-1], host)
            g.note(response)
            yield g


def packets_but_credit(packets: list[Packet]) -> list[tuple[int, int, int, bytes]]:
    return [
        (p.op, p.header.len, p.header.flags, p.payload) for p in packets if p.op != Op.CREDIT_UPDATE
    ]


def guest_to_host(g: Guest) -> tuple[bytes, list[Packet]]:
    """Data of many sizes and layouts, credit updates and a credit request among it,
    several packets per kick; what the host read and the guest got back."""
    total = bytearray()
    reader = threading.Thread(target=lambda: total.extend(recv_exactly(g.host, expected)))
    chunks = [os.urandom(n) for n in (1, 44, 4096, 65536, 1000, 30000, 65536, 7, 20000)]
    layouts: list[list[int] | None] = [None, [10, 30, 7], [1] * HEADER_SIZE + [3] * 50]
    expected = sum(len(c) for c in chunks) * 3
    reader.start()
    for round_ in range(3):
        for i, chunk in enumerate(chunks):
            g.send_data(chunk, layouts[(i + round_) % len(layouts)])
            if i % 3 == 2:  # a credit update of the guest's own between data packets
                g.driver.send(g.header(Op.CREDIT_UPDATE))
        g.driver.send(g.header(Op.CREDIT_REQUEST))  # the Python path's, then C again
    g.driver.wait_tx_done()
    reader.join(10)
    received = g.driver.quiet(0.3)
    return bytes(total), received


def host_to_guest(g: Guest, size: int) -> bytes:
    """`size` bytes from the host, the guest returning credit as Linux does."""
    data = os.urandom(size)
    writer = threading.Thread(target=g.host.sendall, args=(data,))
    writer.start()
    got = bytearray()
    advertised = 0
    while len(got) < size:
        packet = g.driver.recv(timeout=10)
        assert packet.op == Op.RW, packet.header.describe()
        got += packet.payload
        if GUEST_BUF_ALLOC - (len(got) - advertised) < 65536:
            g.driver.send(g.header(Op.CREDIT_UPDATE, fwd_cnt=len(got)))
            advertised = len(got)
    writer.join(10)
    return bytes(got)


def test_guest_to_host_the_same_both_ways(tmp_path: Path) -> None:
    outcomes = []
    for fast in (True, False):
        with guest(tmp_path, fast=fast) as g:
            data, received = guest_to_host(g)
            outcomes.append((len(data), packets_but_credit(received), g.served_in_c))
            # The answer to the last CREDIT_REQUEST tells the guest every byte went.
            assert received and received[-1].op == Op.CREDIT_UPDATE
            assert received[-1].header.fwd_cnt == g.sent
    (fast_len, fast_packets, served), (slow_len, slow_packets, none) = outcomes
    assert fast_len == slow_len == 3 * (1 + 44 + 4096 + 65536 + 1000 + 30000 + 65536 + 7 + 20000)
    assert fast_packets == slow_packets == []
    assert none == 0
    # At least the first round (9 data packets, 3 credit updates) is C's: the first
    # CREDIT_REQUEST and what follows it in a batch are Python's.
    assert served >= 12


def test_host_to_guest_the_same_both_ways(tmp_path: Path) -> None:
    for fast in (True, False):
        for rx_buffer in (HEADER_SIZE + 4096, HEADER_SIZE + 65536):
            with guest(tmp_path / f"{fast}-{rx_buffer}", fast=fast, rx_buffer=rx_buffer) as g:
                # Past the guest's window, so reading stops for credit and resumes.
                data = host_to_guest(g, 3 * GUEST_BUF_ALLOC + 12345)
                assert len(data) == 3 * GUEST_BUF_ALLOC + 12345
                in_c = g.backend.rx_ring.packets
                assert in_c > 0 if fast else in_c == 0
                # And the other way at once on the same connection.
                g.send_data(b"after")
                assert recv_exactly(g.host, 5) == b"after"


def test_host_data_in_order_when_written_in_many_pieces(tmp_path: Path) -> None:
    with guest(tmp_path, fast=True) as g:
        expected = b"".join(i.to_bytes(4, "little") for i in range(40000))

        def write() -> None:
            for start in range(0, len(expected), 1000):
                g.host.sendall(expected[start : start + 1000])

        writer = threading.Thread(target=write)
        writer.start()
        got = bytearray()
        advertised = 0
        while len(got) < len(expected):
            got += g.driver.recv(timeout=10).payload
            if GUEST_BUF_ALLOC - (len(got) - advertised) < 65536:
                g.driver.send(g.header(Op.CREDIT_UPDATE, fwd_cnt=len(got)))
                advertised = len(got)
        writer.join(10)
        assert bytes(got) == expected


# Hostile input in the middle of plain traffic: (what to post, what the guest must see
# for its connection, whether the connection survives).
def _len_beyond_buffer(g: Guest) -> None:
    g.driver.send_raw(g.header(Op.RW, length=5000).encode(), b"x" * 100)


def _spoofed_cid(g: Guest) -> None:
    g.driver.send(g.driver.header(GUEST_PORT, HOST_PORT, Op.RW, length=3, src_cid=7), b"bad")


def _payload_outside_memory(g: Guest) -> None:
    slot = g.driver._tx_slot()
    g.driver.memory.write(slot, g.header(Op.RW, length=100).encode())
    head = g.driver.tx.driver.add([(slot, HEADER_SIZE, False), (1 << 40, 100, False)])
    g.driver._tx_gpa[head] = slot
    g.driver.tx.publish()


def _header_outside_memory(g: Guest) -> None:
    slot = g.driver._tx_slot()
    head = g.driver.tx.driver.add([((1 << 40) - 8, HEADER_SIZE, False)])
    g.driver._tx_gpa[head] = slot
    g.driver.tx.publish()


def _short_header(g: Guest) -> None:
    g.driver.send_raw(g.header(Op.RW, length=0).encode()[:20])


def _empty_data(g: Guest) -> None:
    g.driver.send(g.header(Op.RW, length=0))


def _data_after_shutdown(g: Guest) -> None:
    g.driver.send(g.header(Op.SHUTDOWN, flags=Shutdown.SEND))
    g.driver.send(g.header(Op.RW, length=4), b"late")


def _wrong_type(g: Guest) -> None:
    g.driver.send(g.header(Op.CREDIT_UPDATE, sock_type=2))


def _writable_tx_buffer(g: Guest) -> None:
    slot = g.driver._tx_slot()
    g.driver.memory.write(slot, g.header(Op.RW, length=4).encode() + b"wxyz")
    head = g.driver.tx.driver.add([(slot, HEADER_SIZE + 4, True)])
    g.driver._tx_gpa[head] = slot
    g.driver.tx.publish()


HOSTILE: dict[str, tuple[Callable[[Guest], None], Op | None, bool]] = {
    "len-beyond-buffer": (_len_beyond_buffer, Op.RST, False),
    "spoofed-cid": (_spoofed_cid, None, True),
    "payload-outside-memory": (_payload_outside_memory, None, True),
    "header-outside-memory": (_header_outside_memory, None, True),
    "short-header": (_short_header, None, True),
    "empty-data": (_empty_data, None, True),
    "data-after-shutdown": (_data_after_shutdown, Op.RST, False),
    "wrong-socket-type": (_wrong_type, Op.RST, False),
    "writable-tx-buffer": (_writable_tx_buffer, None, True),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("fast", [True, False], ids=["c", "python"])
def test_hostile_packet_between_plain_ones(tmp_path: Path, case: str, fast: bool) -> None:
    post, answer, survives = HOSTILE[case]
    with guest(tmp_path, fast=fast) as g:
        g.send_data(b"before")
        post(g)
        if survives:
            g.send_data(b"after")
        g.driver.wait_tx_done()
        expected = b"beforeafter" if survives else b"before"
        assert recv_exactly(g.host, len(expected)) == expected
        assert g.served_in_c > 0 if fast else g.served_in_c == 0
        ops = [p.op for p in g.driver.quiet(0.3) if p.header.dst_port == GUEST_PORT]
        if answer is None:
            assert Op.RST not in ops
        else:
            assert answer in ops
        if not survives:  # the host socket is closed with the connection
            assert g.host.recv(10) == b""
        # The device still serves: a new connection is answered.
        g.driver.send(g.driver.header(GUEST_PORT + 1, HOST_PORT + 1, Op.REQUEST))
        assert g.driver.expect(Op.RST).header.dst_port == GUEST_PORT + 1  # nobody listens


def _rx_small(g: Guest, gpa: int) -> int:
    return g.driver.rx.driver.add([(gpa, HEADER_SIZE - 1, True)])


def _rx_outside(g: Guest, gpa: int) -> int:
    return g.driver.rx.driver.add([(1 << 40, HEADER_SIZE + 4096, True)])


def _rx_readable(g: Guest, gpa: int) -> int:
    return g.driver.rx.driver.add([(gpa, HEADER_SIZE + 4096, False)])


def _used(g: Guest, head: int) -> dict[int, int]:
    """Used rx entries (head: length) until `head`'s is among them."""
    d = g.driver
    seen: dict[int, int] = {}
    for _ in range(100):
        seen.update(d.rx.driver.get_used())
        if head in seen:
            return seen
        d.rx.driver.arm_interrupt()
        d.rx.wait_call(0.1)
    raise AssertionError(f"rx buffer {head} never used; used: {seen}")


@pytest.mark.parametrize("bad_buffer", [_rx_small, _rx_outside, _rx_readable])
@pytest.mark.parametrize("fast", [True, False], ids=["c", "python"])
def test_bad_rx_buffer_when_a_packet_is_due(
    tmp_path: Path, bad_buffer: Callable[[Guest, int], int], fast: bool
) -> None:
    """A bad rx buffer is the first posted when the device has host data for the guest
    (read in C on the credit update that resumes it): it is returned empty with a
    complaint, and the next good buffer gets the data."""
    with guest(tmp_path, fast=fast) as g:
        d = g.driver
        ram = d.frontend.ram
        assert ram is not None
        # The guest's whole window of host data, a buffer at a time, fills every
        # posted buffer: no credit and no buffer left.
        window = len(d._rx_gpa) * 4096
        assert window == GUEST_BUF_ALLOC
        filled: dict[int, int] = {}
        for _ in range(len(d._rx_gpa)):
            g.host.sendall(os.urandom(4096))
            while len(filled) < _ + 1:
                d.rx.driver.arm_interrupt()
                filled.update(d.rx.driver.get_used())
                if len(filled) < _ + 1:
                    d.rx.wait_call(1)
        assert set(filled) == set(d._rx_gpa)
        assert all(length == HEADER_SIZE + 4096 for length in filled.values())
        bad = bad_buffer(g, ram.alloc(HEADER_SIZE + 4096))
        good_gpa = ram.alloc(HEADER_SIZE + 4096)
        good = d.rx.driver.add([(good_gpa, HEADER_SIZE + 4096, True)])
        d.rx.publish()
        g.host.sendall(b"due")
        d.send(g.header(Op.CREDIT_UPDATE, fwd_cnt=window))
        used = _used(g, good)
        assert used[bad] == 0
        assert used[good] == HEADER_SIZE + 3
        header = Header.decode(d.memory.read(good_gpa, HEADER_SIZE))
        assert header.op == Op.RW and d.memory.read(good_gpa + HEADER_SIZE, 3) == b"due"
