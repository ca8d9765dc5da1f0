"""Benchmark of vhost-device-rng through the core's Python frontend (run by hand).

Starts the real daemon as a process, plays the guest driver with queue size 256 and
prints, per request size and depth: requests/s, MB/s, p50/p99 latency and the daemon's
CPU per request, then its CPU time, its idle CPU use and its peak RSS.

Each measurement runs twice (`--placement`, the core's `testing.bench`): with the
daemon and this frontend pinned to one CPU, and to two different CPUs; and in slices
(`--slices`), the daemons alternating, ours first in every other slice, so that the
other sessions' load falls on every daemon alike. A request at depth 1 costs two
wake-ups (kick, then call); across CPUs on a VM each is an inter-processor interrupt
through the hypervisor, so the bench also measures that floor with a bare eventfd
ping-pong between two processes placed the same way, to tell the device's cost from
the machine's.

`--daemon LABEL='CMD {sock}'` (repeatable) adds another implementation, e.g.
`--daemon rust='/path/vhost-device-rng --socket-path {sock}'`: all run at once, each
measurement alternates between them, and each row shows its ratio to ours.

    python3 xtask bench rng          # or: .venv/bin/python bench/bench_rng.py
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

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    Ratios,
    add_daemon_arg,
    add_placement_arg,
    add_slices_arg,
    chosen_daemons,
    each_daemon,
    idle_report,
    placed_rounds,
    print_floors,
    python_daemon,
)
from vhost_user_core.testing.bench import percentiles as shared_percentiles
from vhost_user_core.testing.procstat import cpu_seconds

QUEUE_SIZE = 256


@dataclass
class Result:
    size: int
    depth: int
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float = 0.0  # the daemon's, while measured

    def add(self, other: Result) -> Result:
        """This and another slice of the same case, as one measurement."""
        return Result(
            self.size,
            self.depth,
            self.requests + other.requests,
            self.seconds + other.seconds,
            self.latencies + other.latencies,
            self.cpu + other.cpu,
        )

    def row(self, placement: str, label: str, ratio: Ratios) -> str:
        p50, p99 = percentiles(self.latencies)
        rate = self.requests / self.seconds
        mbps = rate * self.size / 1e6
        times = ratio((placement, self.size, self.depth), label, rate)
        return (
            f"| {placement:<8} | {label} | {self.size:>5} B | {self.depth:>3} | {rate:>12,.0f} "
            f"| {times} | {mbps:>8,.1f} | {p50:>8.1f} | {p99:>8.1f} "
            f"| {self.cpu / self.requests * 1e6:>6.2f} |"
        )


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    p50, p99 = shared_percentiles(samples)
    return p50 * 1e6, p99 * 1e6


def reap_or_wait(queue: FrontendQueue) -> int:
    """Reap used buffers as a guest driver does: if there are none, ask for an
    interrupt, look once more (one may have landed meanwhile), then sleep on it."""
    done, _ = queue.driver.reap()
    if done:
        return done
    queue.driver.arm_interrupt()
    done, _ = queue.driver.reap()
    if not done and not queue.wait_call(5.0):
        raise TimeoutError("the device did not answer in 5 s")
    return done


_BUFFERS: dict[tuple[int, int, int], int] = {}


def buffers(frontend: Frontend, size: int, depth: int) -> int:
    """The guest address of `depth` buffers of `size` bytes, the same for every slice of
    a case (so the daemon's RSS counts each case's guest pages once)."""
    assert frontend.ram is not None
    key = (id(frontend), size, depth)
    if key not in _BUFFERS:
        _BUFFERS[key] = frontend.ram.alloc(size * depth, 4096)
    return _BUFFERS[key]


def run_depth_one(frontend: Frontend, queue: FrontendQueue, size: int, seconds: float) -> Result:
    assert frontend.ram is not None
    gpa = buffers(frontend, size, 1)
    driver = queue.driver
    latencies = []
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        driver.add_writable_batch(1, gpa, size, size)
        queue.publish()
        while not reap_or_wait(queue):
            pass
        latencies.append(time.perf_counter() - t0)
        count += 1
    return Result(size, 1, count, sum(latencies), latencies)


def run_pipelined(
    frontend: Frontend, queue: FrontendQueue, size: int, depth: int, seconds: float
) -> Result:
    """Keep `depth` requests in flight; a sample is the time from posting a round of
    buffers to reaping it (so it bounds each request's latency from above)."""
    assert frontend.ram is not None
    base = buffers(frontend, size, depth)
    driver = queue.driver
    latencies = []
    count = 0
    driver.add_writable_batch(depth, base, size, size)
    posted_at = time.perf_counter()
    queue.publish()
    start = posted_at
    end = start + seconds
    while True:
        done = reap_or_wait(queue)
        if not done:
            continue
        now = time.perf_counter()
        latencies.append(now - posted_at)
        count += done
        if now >= end:
            break
        driver.add_writable_batch(done, base, size, size)
        posted_at = now
        queue.publish()
    # Drain what is still in flight.
    while driver.free_descriptors < QUEUE_SIZE:
        count += reap_or_wait(queue)
    return Result(size, depth, count, time.perf_counter() - start, latencies)


OURS_COMMAND = python_daemon("vhost_device_rng.main", "-s {sock}")
CASES = [(size, depth) for size in (64, 4096) for depth in (1, 256)]


def measure_one(
    frontend: Frontend, queue: FrontendQueue, size: int, depth: int, seconds: float
) -> Result:
    if depth == 1:
        return run_depth_one(frontend, queue, size, seconds)
    return run_pipelined(frontend, queue, size, depth, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    add_daemon_arg(parser)
    add_placement_arg(parser)
    add_slices_arg(parser)
    opts = parser.parse_args()
    daemons = chosen_daemons(opts.daemon, OURS_COMMAND)
    print(
        f"vhost-device-rng, queue size {QUEUE_SIZE}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}"
    )
    print()
    print(
        "| placement | daemon | size | in flight | requests/s | × ours | MB/s | p50 µs | p99 µs "
        "| daemon CPU µs/request |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = each_daemon(
            daemons, Path(tmp) / "rng.sock", stack, extra=["--log-level", "warning"]
        )
        queues = []
        for daemon in running:
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            (queue,) = frontend.start_device(1, QUEUE_SIZE, memory_size=64 << 20)
            queues.append((daemon, frontend, queue))
        results: dict[tuple[str, tuple[int, int], str], Result] = {}
        busy: dict[tuple[str, str], tuple[float, float]] = {}  # (daemon CPU, wall)
        rows = placed_rounds(CASES, queues, lambda q: q[0].process.pid, opts.placement, opts.slices)
        for where, (size, depth), (daemon, frontend, queue) in rows:
            pid = daemon.process.pid
            cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
            part = measure_one(frontend, queue, size, depth, opts.seconds / opts.slices)
            part.cpu = cpu_seconds(pid) - cpu0
            key = (where.name, (size, depth), daemon.label)
            results[key] = results[key].add(part) if key in results else part
            cpu, wall = busy.get((where.name, daemon.label), (0.0, 0.0))
            busy[where.name, daemon.label] = (cpu + part.cpu, wall + time.perf_counter() - wall0)
        ratio = Ratios()
        for (name, _, label), result in results.items():
            print(result.row(name, label, ratio))
        print()
        print_floors(opts.placement)
        for (name, label), (cpu, wall) in busy.items():
            print(
                f"{name}, {label}: daemon CPU while loaded {cpu:.2f} s over {wall:.2f} s "
                f"({100 * cpu / wall:.0f} % of one core)"
            )
        for daemon in running:
            print(f"{daemon.label}: {idle_report(daemon.process.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
