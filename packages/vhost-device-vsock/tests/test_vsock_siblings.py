"""Two VMs of one daemon in one group, each played by the Python frontend: what orders
the packets one sends the other, and how long a control packet takes to cross while a
bulk transfer runs on another connection."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from vsock_daemon import running_daemon

from vhost_device_vsock.packet import Op, Shutdown
from vhost_device_vsock.testing import LINUX_RX_BUFFER, Packet, VsockDriver
from vhost_user_core.frontend import Frontend

THREE, FOUR = 3, 4
#: What each side advertises as its receive buffer.
BUF_ALLOC = 256 * 1024
PIECE = LINUX_RX_BUFFER - 44  # payload of one of the receiver's rx buffers


@contextmanager
def siblings(
    tmp_path: Path, *, rx_count: int | None = None
) -> Iterator[tuple[VsockDriver, VsockDriver]]:
    """Guests 3 and 4 of one daemon, in one group; 4 posts `rx_count` rx buffers."""
    with ExitStack() as stack:
        daemon = stack.enter_context(running_daemon(tmp_path, (THREE, FOUR), groups=("g1", "g1")))
        three_fe = stack.enter_context(Frontend.connect(daemon.vms[0].socket))
        four_fe = stack.enter_context(Frontend.connect(daemon.vms[1].socket))
        yield VsockDriver(three_fe, THREE), VsockDriver(four_fe, FOUR, rx_count=rx_count)


def open_sibling(a: VsockDriver, b: VsockDriver, a_port: int, b_port: int) -> None:
    """A stream from `a`'s a_port to `b`'s b_port: REQUEST, RESPONSE."""
    a.send(a.header(a_port, b_port, Op.REQUEST, dst_cid=b.cid, buf_alloc=BUF_ALLOC))
    request = b.expect(Op.REQUEST)
    assert (request.header.src_cid, request.header.src_port) == (a.cid, a_port)
    b.send(b.header(b_port, a_port, Op.RESPONSE, dst_cid=a.cid, buf_alloc=BUF_ALLOC))
    a.expect(Op.RESPONSE)


def receive(driver: VsockDriver, count: int) -> list[Packet]:
    return [driver.recv() for _ in range(count)]


def test_shutdown_overtakes_data_of_another_connection(tmp_path: Path) -> None:
    """Guest 4 has 8 rx buffers: guest 3's 16 buffers' worth of data on A fills them
    and the rest waits; a SHUTDOWN guest 3 sends next on B goes ahead of that rest."""
    with siblings(tmp_path, rx_count=8) as (three, four):
        open_sibling(three, four, 1000, 2000)
        open_sibling(three, four, 1001, 2001)
        data = os.urandom(16 * PIECE)
        for at in range(0, len(data), 4 * PIECE):
            chunk = data[at : at + 4 * PIECE]
            three.send(three.header(1000, 2000, Op.RW, dst_cid=FOUR, length=len(chunk)), chunk)
        three.send(three.header(1001, 2001, Op.SHUTDOWN, dst_cid=FOUR, flags=Shutdown.RCV))
        three.wait_tx_done()
        got = receive(four, 17)
    ops = [(p.header.src_port, p.op) for p in got]
    shutdown_at = ops.index((1001, Op.SHUTDOWN))
    # It went into the first rx buffer free after it arrived, never behind A's rest.
    assert shutdown_at <= 8, ops
    assert b"".join(p.payload for p in got if p.op == Op.RW) == data


def test_shutdown_follows_the_data_of_its_own_connection(tmp_path: Path) -> None:
    """A connection's SHUTDOWN never overtakes its own data, waiting or not."""
    with siblings(tmp_path, rx_count=8) as (three, four):
        open_sibling(three, four, 1000, 2000)
        data = os.urandom(16 * PIECE)
        for at in range(0, len(data), 4 * PIECE):
            chunk = data[at : at + 4 * PIECE]
            three.send(three.header(1000, 2000, Op.RW, dst_cid=FOUR, length=len(chunk)), chunk)
        three.send(three.header(1000, 2000, Op.SHUTDOWN, dst_cid=FOUR, flags=Shutdown.SEND))
        three.send(three.header(1000, 2000, Op.CREDIT_UPDATE, dst_cid=FOUR))
        three.wait_tx_done()
        got = receive(four, 18)
    assert [p.op for p in got[16:]] == [Op.SHUTDOWN, Op.CREDIT_UPDATE]
    assert b"".join(p.payload for p in got[:16]) == data


#: Control packets timed per run, one at a time.
PROBES = 300
BLOCK = 64 * 1024
DATA_PORT, PROBE_PORT, FOUR_PORT = 1000, 1001, 2000
#: A host program streaming into guest 4 as fast as it takes it (a separate process).
HOST_WRITER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sock.sendall(b"CONNECT 2000\\n")
block = bytes(1 << 20)
try:
    while True:
        sock.sendall(block)
except OSError:
    pass
"""


class Receiver:
    """Guest 4: takes whatever arrives, accepts every connection, gives each peer its
    credit back every 64 KiB consumed, and notes when each probe arrived."""

    def __init__(self, driver: VsockDriver) -> None:
        self.driver = driver
        #: bytes consumed and credited, per connection (peer CID, peer port)
        self.consumed: dict[tuple[int, int], int] = {}
        self.credited: dict[tuple[int, int], int] = {}
        self.probes: dict[int, float] = {}

    def step(self) -> None:
        four = self.driver
        four.poll(payloads=False)
        now = time.perf_counter()
        while four.received:
            hdr = four.received.popleft().header
            peer = (hdr.src_cid, hdr.src_port)
            if hdr.op == Op.REQUEST:
                four.send(
                    four.header(
                        FOUR_PORT,
                        hdr.src_port,
                        Op.RESPONSE,
                        dst_cid=hdr.src_cid,
                        buf_alloc=BUF_ALLOC,
                    )
                )
            elif hdr.op == Op.RW:
                self.consumed[peer] = self.consumed.get(peer, 0) + hdr.len
            elif hdr.op == Op.CREDIT_UPDATE and peer == (THREE, PROBE_PORT):
                self.probes[hdr.fwd_cnt] = now
        for peer, consumed in self.consumed.items():
            if consumed - self.credited.get(peer, 0) >= BLOCK:
                self.credited[peer] = consumed
                four.send(
                    four.header(
                        FOUR_PORT,
                        peer[1],
                        Op.CREDIT_UPDATE,
                        dst_cid=peer[0],
                        fwd_cnt=consumed,
                        buf_alloc=BUF_ALLOC,
                    )
                )
        four.reap_tx()


def probe_latencies(three: VsockDriver, receiver: Receiver, *, sibling_bulk: bool) -> list[float]:
    """Guest 3 sends CREDIT_UPDATEs on its connection to guest 4, each once the last
    has arrived: the time from its kick until guest 4's driver sees it. With
    `sibling_bulk`, guest 3 also streams to guest 4 on another connection (64 KiB
    packets within 4's credit), so a probe follows whatever data guest 3 queued
    before it. One thread drives both guests without sleeping: the figures hold no
    wake-up of the test's own."""
    block = os.urandom(BLOCK)
    sent = peer_fwd = 0
    sent_at: dict[int, float] = {}
    probe = 0
    while len(receiver.probes) < PROBES:
        three.reap_tx()
        three.poll(payloads=False)
        while three.received:
            hdr = three.received.popleft().header
            if hdr.dst_port == DATA_PORT:
                peer_fwd = hdr.fwd_cnt
        if probe == len(receiver.probes):
            probe += 1
            sent_at[probe] = time.perf_counter()
            three.send(
                three.header(PROBE_PORT, FOUR_PORT, Op.CREDIT_UPDATE, dst_cid=FOUR, fwd_cnt=probe)
            )
        elif sibling_bulk and sent - peer_fwd + BLOCK <= BUF_ALLOC:
            three.send(three.header(DATA_PORT, FOUR_PORT, Op.RW, dst_cid=FOUR, length=BLOCK), block)
            sent += BLOCK
        receiver.step()
    return [receiver.probes[i] - sent_at[i] for i in range(1, PROBES + 1)]


def summary(latencies: list[float]) -> str:
    us = sorted(x * 1e6 for x in latencies)
    return (
        f"median {statistics.median(us):.0f} us, 90% {us[int(len(us) * 0.9)]:.0f} us, "
        f"max {us[-1]:.0f} us"
    )


@pytest.mark.parametrize("load", ["idle", "sibling bulk", "host bulk"])
def test_control_packet_latency(tmp_path: Path, load: str) -> None:
    """How long a sibling's control packet takes to reach the guest: idle, while the
    sender streams to the same guest on another connection, and while a host program
    streams into that guest (its worker busy filling rx buffers)."""
    with siblings(tmp_path) as (three, four):
        open_sibling(three, four, PROBE_PORT, FOUR_PORT)
        open_sibling(three, four, DATA_PORT, FOUR_PORT)
        receiver = Receiver(four)
        writer = None
        if load == "host bulk":
            writer = subprocess.Popen(
                [sys.executable, "-c", HOST_WRITER, str(tmp_path / "vm4.vsock")]
            )
            deadline = time.monotonic() + 10
            while not receiver.consumed:
                assert time.monotonic() < deadline, "the host program's data never came"
                receiver.step()
        try:
            latencies = probe_latencies(three, receiver, sibling_bulk=load == "sibling bulk")
        finally:
            if writer is not None:
                writer.kill()
                writer.wait()
    print(f"sibling control packet, {load}: {summary(latencies)} ({PROBES} probes)")
    # Generous (a shared 2-CPU machine): what matters is that a probe never waits
    # for other connections' data or for the receiving worker's next wake-up.
    assert statistics.median(latencies) < 0.002, summary(latencies)
