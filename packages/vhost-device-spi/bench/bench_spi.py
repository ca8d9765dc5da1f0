"""Benchmark of vhost-device-spi through the core's Python frontend (run by hand).

Starts the real daemon as a process on the simulated controller (`-l sim`), plays the
virtio-spi driver (head, tx, rx, result: four descriptors a transfer, full duplex) and
prints, per transfer size and number in flight: transfers/s, MB/s each way, p50 latency
of a round; then the daemon's CPU per transfer, its idle CPU use and its peak RSS.

`--daemon LABEL='CMD {sock}'` adds another implementation, measured in the same run,
alternating, each row with its ratio to ours; each with the daemon on the bench's CPU
and on another (`--placement`), each row saying which. Upstream's daemon needs a real
/dev/spidevX.Y (it has no simulated controller), so it cannot run here.

    python3 xtask bench spi          # or: .venv/bin/python bench/bench_spi.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vhost_device_spi.protocol import TransferHead
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    Ratios,
    add_daemon_arg,
    add_placement_arg,
    chosen_daemons,
    each_daemon,
    idle_report,
    percentiles,
    placed_rounds,
    print_floors,
    python_daemon,
    reap_used,
)
from vhost_user_core.testing.procstat import cpu_seconds

QUEUE_SIZE = 1024
HEAD = TransferHead(0, 8, 0, 0, 0, 0, 1_000_000).encode()


@dataclass
class Result:
    size: int
    depth: int
    transfers: int
    seconds: float
    rounds: list[float]
    cpu: float

    def row(self, placement: str, label: str, ratio: Ratios) -> str:
        rate = self.transfers / self.seconds
        mbps = rate * self.size / 1e6
        p50 = percentiles(self.rounds)[0] * 1e6
        cpu = self.cpu / self.transfers * 1e6
        times = ratio((placement, self.size, self.depth), label, rate)
        return (
            f"| {placement} | {label} | {self.size:>5} B | {self.depth:>3} "
            f"| {rate:>10,.0f} | {times} | {mbps:>6.1f} "
            f"| {p50:>8.0f} | {cpu:>6.1f} |"
        )


def run(
    frontend: Frontend, queue: FrontendQueue, pid: int, size: int, depth: int, seconds: float
) -> Result:
    assert frontend.ram is not None
    ram = frontend.ram
    chains = []
    for i in range(depth):
        head, tx = ram.alloc(len(HEAD)), ram.alloc(size)
        ram.memory.write(head, HEAD)
        ram.memory.write(tx, bytes([i & 0xFF]) * size)
        chains.append(
            [
                (head, len(HEAD), False),
                (tx, size, False),
                (ram.alloc(size), size, True),
                (ram.alloc(1), 1, True),
            ]
        )
    rounds: list[float] = []
    count = 0
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for chain in chains:
            queue.driver.add(chain)
        queue.publish()
        reap_used(queue, depth)
        rounds.append(time.perf_counter() - t0)
        count += depth
    elapsed = time.perf_counter() - start
    return Result(size, depth, count, elapsed, rounds, cpu_seconds(pid) - cpu0)


OURS_COMMAND = python_daemon("vhost_device_spi.main", "-s {sock} -l sim")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    add_daemon_arg(parser)
    add_placement_arg(parser)
    opts = parser.parse_args()
    daemons = chosen_daemons(opts.daemon, OURS_COMMAND)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = each_daemon(
            daemons,
            Path(tmp) / "spi.sock",
            stack,
            extra=["--log-level", "warning"],
        )
        queues = []
        for daemon in running:
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            (queue,) = frontend.start_device(1, QUEUE_SIZE, memory_size=64 << 20)
            queues.append((daemon, frontend, queue))
        cases = [(size, depth) for size in (32, 4096) for depth in (1, 64)]
        pid = lambda entry: entry[0].process.pid  # noqa: E731
        results = [
            (
                where.name,
                daemon.label,
                run(frontend, queue, daemon.process.pid, size, depth, opts.seconds),
            )
            for where, (size, depth), (daemon, frontend, queue) in placed_rounds(
                cases, queues, pid, opts.placement
            )
        ]
        idle = [f"{d.label}: {idle_report(d.process.pid)}" for d in running]
    print(
        f"vhost-device-spi -l sim, queue size {QUEUE_SIZE}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print()
    print(
        "| placement | daemon | size | in flight | transfers/s | × ours | MB/s | p50 round µs "
        "| daemon CPU µs/transfer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ratio = Ratios()
    for where, label, result in results:
        print(result.row(where, label, ratio))
    print()
    print_floors(opts.placement)
    print("\n".join(idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
