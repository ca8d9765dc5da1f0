"""Benchmark of vhost-device-vsock through the core's Python frontend (run by hand).

Starts the real daemon as a process; this script plays the guest driver (queue size
256) and a second process plays the host program on the hybrid Unix socket. Prints
this machine's wake-up round trip (the floor under a credit round trip), then for each
--tx-buffer-size: bulk throughput guest -> host and host -> guest with 64 KiB writes,
connections per second (REQUEST, RESPONSE, RST), and the daemon's CPU time per GB, its
idle CPU use and its peak RSS.

The frontend counts the bytes it receives without copying them out of its buffers
(a real guest would copy them to its socket). On a 2-CPU machine the three processes
share two CPUs.

    python3 xtask bench vsock          # or: .venv/bin/python bench/bench_vsock.py
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vhost_device_vsock.packet import HEADER_SIZE, Op
from vhost_device_vsock.testing import VsockDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

CID = 3
BLOCK = 64 * 1024
QUEUE_SIZE = 256
#: What the frontend guest advertises as its receive buffer (Linux's default).
GUEST_BUF_ALLOC = 256 * 1024


# The host side, run as a separate process (`--host sink PATH` / `--host source ...`).
def host_sink(path: str) -> None:
    """Accept one connection at `path`, read it to EOF, print the byte count."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    print("ready", flush=True)
    conn, _ = listener.accept()
    buffer = bytearray(1 << 20)
    total = 0
    while n := conn.recv_into(buffer):
        total += n
    print(total, flush=True)


def host_source(uds: str, port: int, total: int) -> None:
    """CONNECT to the guest's `port` and write `total` bytes in 64 KiB writes."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(uds)
    sock.sendall(f"CONNECT {port}\n".encode())
    sock.makefile("rb").readline()
    block = bytes(BLOCK)
    sent = 0
    while sent < total:
        sent += sock.send(block[: min(BLOCK, total - sent)])
    sock.close()


def host_acceptor(path: str) -> None:
    """Accept and close connections at `path` until killed."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1024)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.close()


def spawn_host(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--host", *args], stdout=subprocess.PIPE, text=True
    )
    if args[0] != "source":
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


# The guest side.
class BulkGuest:
    """The frontend as a guest, with fast paths that skip per-packet copies."""

    def __init__(self, driver: VsockDriver) -> None:
        self.driver = driver
        self.waiter = select.poll()
        self.waiter.register(driver.tx.call_fd, select.POLLIN)
        self.waiter.register(driver.rx.call_fd, select.POLLIN)
        # Payloads are written into every tx slot once; each send writes a header only.
        for gpa in list(driver._tx_free):
            driver.memory.write(gpa + HEADER_SIZE, bytes(BLOCK))

    def wait(self) -> None:
        """Sleep until the device completes something. Interrupts are armed first and
        the rings looked at again after, or an entry used in between would be missed."""
        d = self.driver
        d.tx.driver.arm_interrupt()
        d.rx.driver.arm_interrupt()
        if d.poll(payloads=False) or d.reap_tx():
            return
        for fd, _ in self.waiter.poll(1000):
            try:
                os.eventfd_read(fd)
            except BlockingIOError:
                pass

    def send_bulk(self, port: int, total: int) -> None:
        """RW packets of 64 KiB within the device's credit, then SHUTDOWN."""
        d = self.driver
        d.send(d.header(40000, port, Op.REQUEST))
        response = d.expect(Op.RESPONSE).header
        buf_alloc, fwd_cnt = response.buf_alloc, response.fwd_cnt
        sent = 0
        while sent < total:
            d.poll(payloads=False)
            while d.received:
                hdr = d.received.popleft().header
                buf_alloc, fwd_cnt = hdr.buf_alloc, hdr.fwd_cnt
            d.reap_tx()
            posted = 0
            while sent < total and d._tx_free:
                n = min(BLOCK, total - sent, buf_alloc - ((sent - fwd_cnt) & 0xFFFFFFFF))
                if n <= 0:
                    break
                gpa = d._tx_free.popleft()
                d.memory.write(gpa, d.header(40000, port, Op.RW, length=n).encode())
                head = d.tx.driver.add([(gpa, HEADER_SIZE, False), (gpa + HEADER_SIZE, n, False)])
                d._tx_gpa[head] = gpa
                sent += n
                posted += 1
            if posted:
                d.tx.publish()
            else:
                self.wait()
        d.send(d.header(40000, port, Op.SHUTDOWN, flags=3))

    def receive_bulk(self, port: int, total: int) -> None:
        """Accept the host's connection and take `total` bytes, returning credit as a
        Linux guest does (when less than 64 KiB of its buffer is known free)."""
        d = self.driver
        request = d.recv(timeout=10).header
        while request.op != Op.REQUEST:  # what is left of the last run (its RST)
            request = d.recv(timeout=10).header
        peer = request.src_port
        d.send(d.header(port, peer, Op.RESPONSE, buf_alloc=GUEST_BUF_ALLOC))
        got = advertised = 0
        while got < total:
            if not d.poll(payloads=False):
                self.wait()  # which may poll too: what it found is in d.received
            while d.received:
                hdr = d.received.popleft().header
                if hdr.op == Op.RW:
                    got += hdr.len
            if GUEST_BUF_ALLOC - (got - advertised) < BLOCK:
                d.send(
                    d.header(port, peer, Op.CREDIT_UPDATE, buf_alloc=GUEST_BUF_ALLOC, fwd_cnt=got)
                )
                advertised = got

    def connections(self, port: int, count: int, depth: int = 64) -> None:
        d = self.driver
        for start in range(0, count, depth):
            ports = range(50000 + start, 50000 + min(start + depth, count))
            for p in ports:
                d.send(d.header(p, port, Op.REQUEST), publish=False)
            d.tx.publish()
            answered = 0
            while answered < len(ports):
                answered += d.recv().op == Op.RESPONSE
            for p in ports:
                d.send(d.header(p, port, Op.RST), publish=False)
            d.tx.publish()
            d.reap_tx()


@contextmanager
def daemon(tmp: Path, tx_buffer: int) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    sock, uds = tmp / "vsock.sock", tmp / "vsock.uds"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vhost_device_vsock.main",
            "--guest-cid",
            str(CID),
            "--socket",
            str(sock),
            "--uds-path",
            str(uds),
            "--tx-buffer-size",
            str(tx_buffer),
            "--queue-size",
            str(QUEUE_SIZE),
            "--log-level",
            "warning",
        ]
    )
    try:
        wait_for_socket(sock)
        yield proc, sock, uds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def measure(pid: int, label: str, nbytes: int, run: Callable[[], None]) -> None:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    run()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    print(
        f"  {label:<16} {nbytes / elapsed / 1e9:6.2f} GB/s   daemon CPU "
        f"{cpu / (nbytes / 1e9):5.2f} s per GB ({cpu / elapsed * 100:3.0f} % of a CPU)"
    )


def wakeup_round_trip(rounds: int = 20000) -> float:
    """Seconds per eventfd ping-pong between two processes that sleep in between: the
    floor under one credit round trip (a kick there, an interrupt back)."""
    ping, pong = os.eventfd(0), os.eventfd(0)
    pid = os.fork()
    if pid == 0:
        waiter = select.epoll()
        waiter.register(ping, select.EPOLLIN)
        for _ in range(rounds):
            waiter.poll()
            os.eventfd_read(ping)
            os.eventfd_write(pong, 1)
        os._exit(0)
    waiter = select.poll()
    waiter.register(pong, select.POLLIN)
    start = time.perf_counter()
    for _ in range(rounds):
        os.eventfd_write(ping, 1)
        waiter.poll()
        os.eventfd_read(pong)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    os.close(ping)
    os.close(pong)
    return elapsed / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--gib", type=float, default=2.0, help="bytes per direction, GiB")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument(
        "--tx-buffer-size",
        type=int,
        action="append",
        help="the daemon's --tx-buffer-size, repeatable (default: 65536, 262144, 1048576)",
    )
    args = parser.parse_args()
    if args.host:
        kind, *rest = args.host
        if kind == "sink":
            host_sink(rest[0])
        elif kind == "source":
            host_source(rest[0], int(rest[1]), int(rest[2]))
        else:
            host_acceptor(rest[0])
        return
    total = int(args.gib * (1 << 30))
    print(f"vhost-device-vsock, frontend guest, queue {QUEUE_SIZE}, {BLOCK // 1024} KiB writes")
    rtt = wakeup_round_trip()
    print(
        f"  wake-up round trip {rtt * 1e6:.0f} us between two processes: with a window of "
        f"one 64 KiB packet, guest -> host cannot beat {BLOCK / rtt / 1e9:.2f} GB/s"
    )
    for tx_buffer in args.tx_buffer_size or (64 * 1024, 256 * 1024, 1 << 20):
        with tempfile.TemporaryDirectory() as tmp:
            run_one(Path(tmp), tx_buffer, total, args.connections)


def run_one(tmp: Path, tx_buffer: int, total: int, connections: int) -> None:
    """Every measurement against one daemon with `--tx-buffer-size tx_buffer`."""
    with daemon(tmp, tx_buffer) as (proc, sock, uds), Frontend.connect(sock) as frontend:
        print(f" --tx-buffer-size {tx_buffer // 1024} KiB:")
        driver = VsockDriver(
            frontend,
            CID,
            queue_size=QUEUE_SIZE,
            rx_buffer=HEADER_SIZE + BLOCK,
            rx_count=64,
            memory_size=64 << 20,
        )
        guest = BulkGuest(driver)
        sink = spawn_host("sink", f"{uds}_1234")

        def to_host() -> None:
            guest.send_bulk(1234, total)
            assert sink.stdout is not None
            assert int(sink.stdout.readline()) == total

        measure(proc.pid, "guest -> host", total, to_host)
        sink.wait()

        source = spawn_host("source", str(uds), "5000", str(total))
        measure(proc.pid, "host -> guest", total, lambda: guest.receive_bulk(5000, total))
        source.wait()

        acceptor = spawn_host("acceptor", f"{uds}_1235")
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        guest.connections(1235, connections)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        acceptor.kill()
        acceptor.wait()
        print(
            f"  connections      {connections / elapsed:8.0f} /s    daemon CPU "
            f"{cpu / connections * 1e6:5.0f} us each"
        )
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(2)
        print(f"  idle             {cpu_seconds(proc.pid) - cpu0:.3f} s CPU in 2 s")
        print(f"  peak RSS         {peak_rss_kib(proc.pid) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
