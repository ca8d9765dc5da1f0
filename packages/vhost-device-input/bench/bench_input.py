"""Benchmark of vhost-device-input through the core's Python frontend (run by hand).

Starts the real daemon as a process with `-e sim:tablet`, keeps the eventq stocked
with 8-byte buffers as the Linux driver does, and sends frames (ABS_X, ABS_Y,
SYN_REPORT) through the events socket: events/s, and the latency from a frame's
send to its last event in the used ring (one frame at a time); then the daemon's CPU
use while idle and its peak RSS. `--daemon LABEL='CMD {sock}'` adds another
implementation, measured in the same run, alternating, each row with its ratio to ours
(fed through `<socket>.events`, if it has one). Each measurement runs with the daemon on
the bench's CPU and on another (`--placement`), and each row says which.

    python3 xtask bench input        # or: .venv/bin/python bench/bench_input.py
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

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
)
from vhost_user_core.testing.procstat import cpu_seconds

FRAME = 3  # events per frame


def wait_for(queue: FrontendQueue, count: int) -> list[tuple[int, int]]:
    """Like FrontendQueue.wait_used, but it sleeps only when nothing came at all
    (wait_used also sleeps on a short batch: this bench ran at 60 events/s with it)."""
    used: list[tuple[int, int]] = []
    while len(used) < count:
        got = queue.driver.get_used()
        if not got:
            queue.driver.arm_interrupt()
            got = queue.driver.get_used()
            if not got and not queue.wait_call(5.0):
                raise TimeoutError("no events in 5 s")
        used += got
    return used


def measure(socket_path: str, pid: int, seconds: float) -> tuple[float, float, float, float]:
    """(events/s, frame p50 s, frame p99 s, daemon CPU s per event) of one daemon, fed
    through its events socket (`<socket>.events`)."""
    with (
        Frontend.connect(socket_path) as frontend,
        socket.socket(socket.AF_UNIX) as events,
    ):
        eventq, _ = frontend.start_device(2, 1024)
        assert frontend.ram is not None
        addrs = [frontend.ram.alloc(8) for _ in range(1024)]
        heads = [eventq.driver.add([(a, 8, True)]) for a in addrs]
        eventq.publish()
        events.connect(f"{socket_path}.events")
        by_head = dict(zip(heads, addrs, strict=True))

        def repost(used: list[tuple[int, int]]) -> None:
            for head, _ in used:
                eventq.driver.add([(by_head[head], 8, True)])
            eventq.publish()

        # latency: one frame at a time
        samples = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            events.sendall(b"3 0 1\n3 1 2\n0 0 0\n")
            used = wait_for(eventq, FRAME)
            samples.append(time.perf_counter() - t0)
            repost(used)
        # throughput: frames in batches of 100 lines' worth
        batch = b"3 0 1\n3 1 2\n0 0 0\n" * 100
        count, cpu0 = 0, cpu_seconds(pid)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            events.sendall(batch)
            used = wait_for(eventq, 300)
            count += len(used)
            repost(used)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
    p50, p99 = percentiles(samples)
    return count / elapsed, p50, p99, cpu / count


OURS_COMMAND = python_daemon("vhost_device_input.main", "-s {sock} -e sim:tablet")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    add_daemon_arg(parser)
    add_placement_arg(parser)
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, OURS_COMMAND)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = each_daemon(
            daemons, Path(tmp) / "input.sock", stack, extra=["--log-level", "warning"]
        )
        ratio = Ratios()
        print(
            "| placement | daemon | events/s | × ours | frame p50 µs | frame p99 µs "
            "| daemon CPU µs/event |"
        )
        print("|---|---|---|---|---|---|---|")
        pid = lambda daemon: daemon.process.pid  # noqa: E731
        for where, _, daemon in placed_rounds(["frames"], running, pid, args.placement):
            if not Path(f"{daemon.socket}.events").exists():
                print(
                    f"| {where.name} | {daemon.label} | no `<socket>.events` to feed: "
                    "not measured | | | | |"
                )
                continue
            rate, p50, p99, cpu = measure(daemon.socket, daemon.process.pid, args.seconds)
            print(
                f"| {where.name} | {daemon.label} | {rate:,.0f} "
                f"| {ratio(where.name, daemon.label, rate)} "
                f"| {p50 * 1e6:.0f} | {p99 * 1e6:.0f} | {cpu * 1e6:.1f} |"
            )
        print()
        print_floors(args.placement)
        for daemon in running:
            print(f"{daemon.label}: {idle_report(daemon.process.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
