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

`--daemon LABEL='CMD {sock}'` (repeatable; with `{uds}`, `{cid}`, `{tx_buffer}` and
`{queue_size}` as ours takes them) adds another implementation, e.g. upstream's
`--guest-cid {cid} --socket {sock} --uds-path {uds} --tx-buffer-size {tx_buffer}
--queue-size {queue_size}`: all run at once, each measurement alternates between them,
and each row shows its ratio to ours.

`--callgrind N` counts each daemon's user-space instructions instead (valgrind's
callgrind, the same for the same work whatever the load): per 64 KiB packet each way
and per connection, from a run of 3N minus one of N, so start-up cancels.

    python3 xtask bench vsock          # or: .venv/bin/python bench/bench_vsock.py
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from vhost_device_vsock.packet import HEADER_SIZE, Op
from vhost_device_vsock.testing import VsockDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.bench import (
    DaemonCommand,
    Ratios,
    Started,
    add_daemon_arg,
    callgrind_total,
    chosen_daemons,
    python_daemon,
    rounds,
    started,
    under_callgrind,
)
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


OURS_COMMAND = python_daemon(
    "vhost_device_vsock.main",
    "--guest-cid {cid} --socket {sock} --uds-path {uds} --tx-buffer-size {tx_buffer} "
    "--queue-size {queue_size}",
)


def measure(pid: int, nbytes: int, run: Callable[[], None]) -> tuple[float, float, float]:
    """(bytes/s, daemon CPU s per GB, daemon CPU share) of `run`."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    run()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    return nbytes / elapsed, cpu / (nbytes / 1e9), cpu / elapsed


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
    parser.add_argument(
        "--callgrind",
        type=int,
        metavar="N",
        help="count instructions per packet and per connection instead (runs of N and 3N)",
    )
    add_daemon_arg(parser)
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
    daemons = chosen_daemons(args.daemon, OURS_COMMAND)
    if args.callgrind:
        print_instructions(daemons, args.tx_buffer_size or [64 * 1024], args.callgrind)
        return
    total = int(args.gib * (1 << 30))
    print(f"vhost-device-vsock, frontend guest, queue {QUEUE_SIZE}, {BLOCK // 1024} KiB writes")
    rtt = wakeup_round_trip()
    print(
        f"  wake-up round trip {rtt * 1e6:.0f} us between two processes: with a window of "
        f"one 64 KiB packet, guest -> host cannot beat {BLOCK / rtt / 1e9:.2f} GB/s"
    )
    print()
    print("| tx buffer | daemon | measurement | rate | × ours | daemon CPU | CPU share |")
    print("|---|---|---|---|---|---|---|")
    ratio = Ratios()
    for tx_buffer in args.tx_buffer_size or (64 * 1024, 256 * 1024, 1 << 20):
        with tempfile.TemporaryDirectory() as tmp:
            run_one(Path(tmp), tx_buffer, total, args.connections, daemons, ratio)


MEASUREMENTS = ("guest -> host", "host -> guest", "connections")


def instructions(daemon: DaemonCommand, tx_buffer: int, measurement: str, count: int) -> int:
    """The daemon's user-space instructions, start-up included, for `count` packets
    (or connections) of `measurement`."""
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        uds = where / "vsock.uds"
        fields = {"cid": CID, "uds": uds, "tx_buffer": tx_buffer, "queue_size": QUEUE_SIZE}
        wrapped = under_callgrind(daemon, where / "callgrind.out")
        with started(wrapped, where / "vsock.sock", fields=fields) as d:
            with Frontend.connect(d.socket) as frontend:
                session = Session(d, uds, frontend)
                if measurement == "guest -> host":
                    session.to_host(count * BLOCK)
                elif measurement == "host -> guest":
                    session.from_host(count * BLOCK)
                else:
                    session.connect(count)
        return callgrind_total(where / "callgrind.out")


def print_instructions(daemons: list[DaemonCommand], tx_buffers: list[int], n: int) -> None:
    print("| tx buffer | daemon | measurement | instructions | × ours |")
    print("|---|---|---|---|---|")
    ratio = Ratios()
    for tx_buffer in tx_buffers:
        for name, daemon in rounds(MEASUREMENTS, daemons):
            each = (
                instructions(daemon, tx_buffer, name, 3 * n)
                - instructions(daemon, tx_buffer, name, n)
            ) / (2 * n)
            unit = "per connection" if name == "connections" else "per packet"
            print(
                f"| {tx_buffer // 1024} KiB | {daemon.label} | {name} | {each:,.0f} {unit} "
                f"| {ratio((tx_buffer, name), daemon.label, each)} |"
            )


class Session:
    """One daemon of a side-by-side run, its frontend guest and its host socket."""

    def __init__(self, daemon: Started, uds: Path, frontend: Frontend) -> None:
        self.daemon, self.uds = daemon, uds
        driver = VsockDriver(
            frontend,
            CID,
            queue_size=QUEUE_SIZE,
            rx_buffer=HEADER_SIZE + BLOCK,
            rx_count=64,
            memory_size=64 << 20,
        )
        self.guest = BulkGuest(driver)

    def to_host(self, total: int) -> tuple[float, float, float]:
        sink = spawn_host("sink", f"{self.uds}_1234")

        def run() -> None:
            self.guest.send_bulk(1234, total)
            assert sink.stdout is not None
            assert int(sink.stdout.readline()) == total

        result = measure(self.daemon.process.pid, total, run)
        sink.wait()
        return result

    def from_host(self, total: int) -> tuple[float, float, float]:
        source = spawn_host("source", str(self.uds), "5000", str(total))
        result = measure(
            self.daemon.process.pid, total, lambda: self.guest.receive_bulk(5000, total)
        )
        source.wait()
        return result

    def connect(self, connections: int) -> tuple[float, float, float]:
        """(connections/s, daemon CPU s per connection, CPU share)."""
        acceptor = spawn_host("acceptor", f"{self.uds}_1235")
        pid = self.daemon.process.pid
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        self.guest.connections(1235, connections)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        acceptor.kill()
        acceptor.wait()
        return connections / elapsed, cpu / connections, cpu / elapsed


def run_one(
    tmp: Path,
    tx_buffer: int,
    total: int,
    connections: int,
    daemons: list[DaemonCommand],
    ratio: Ratios,
) -> None:
    """Every measurement against every daemon with `--tx-buffer-size tx_buffer`, all
    running at once, alternating."""
    with ExitStack() as stack:
        sessions = []
        for n, command in enumerate(daemons):
            uds = tmp / f"vsock{n}.uds"
            fields = {"cid": CID, "uds": uds, "tx_buffer": tx_buffer, "queue_size": QUEUE_SIZE}
            daemon = stack.enter_context(
                started(
                    command,
                    tmp / f"vsock{n}.sock",
                    fields=fields,
                    extra=["--log-level", "warning"],
                )
            )
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            sessions.append(Session(daemon, uds, frontend))
        kib = f"{tx_buffer // 1024} KiB"
        for name, session in rounds(["guest -> host", "host -> guest"], sessions):
            run = session.to_host if name == "guest -> host" else session.from_host
            rate, per_gb, share = run(total)
            label = session.daemon.label
            print(
                f"| {kib} | {label} | {name} | {rate / 1e9:.2f} GB/s "
                f"| {ratio((tx_buffer, name), label, rate)} | {per_gb:.2f} s per GB "
                f"| {share * 100:.0f} % |"
            )
        for name, session in rounds(["connections"], sessions):
            rate, each, share = session.connect(connections)
            label = session.daemon.label
            print(
                f"| {kib} | {label} | {name} | {rate:.0f} /s "
                f"| {ratio((tx_buffer, name), label, rate)} | {each * 1e6:.0f} us each "
                f"| {share * 100:.0f} % |"
            )
        for session in sessions:
            pid = session.daemon.process.pid
            cpu0 = cpu_seconds(pid)
            time.sleep(2)
            print(
                f"  {kib}, {session.daemon.label}: idle {cpu_seconds(pid) - cpu0:.3f} s CPU "
                f"in 2 s; peak RSS {peak_rss_kib(pid) / 1024:.1f} MiB"
            )


if __name__ == "__main__":
    main()
