"""Benchmark of vhost-device-input through the core's Python frontend (run by hand).

Starts the real daemon as a process with `-e sim:tablet`, keeps the eventq stocked
with 8-byte buffers as the Linux driver does, and sends frames (ABS_X, ABS_Y,
SYN_REPORT) through the events socket: events/s, and the latency from a frame's
send to its last event in the used ring (one frame at a time); then the daemon's CPU
use while idle and its peak RSS.

    python3 xtask bench input        # or: .venv/bin/python bench/bench_input.py
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import daemon_process, idle_report, percentiles
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "input.sock"
        argv = [sys.executable, "-m", "vhost_device_input.main", "-s", str(base)]
        argv += ["-e", "sim:tablet", "--log-level", "warning"]
        with daemon_process(argv, [f"{base}0"]) as daemon:
            with (
                Frontend.connect(f"{base}0") as frontend,
                socket.socket(socket.AF_UNIX) as events,
            ):
                eventq, _ = frontend.start_device(2, 1024)
                assert frontend.ram is not None
                addrs = [frontend.ram.alloc(8) for _ in range(1024)]
                heads = [eventq.driver.add([(a, 8, True)]) for a in addrs]
                eventq.publish()
                events.connect(f"{base}0.events")
                by_head = dict(zip(heads, addrs, strict=True))

                def repost(used: list[tuple[int, int]]) -> None:
                    for head, _ in used:
                        eventq.driver.add([(by_head[head], 8, True)])
                    eventq.publish()

                # latency: one frame at a time
                samples = []
                end = time.perf_counter() + args.seconds
                while time.perf_counter() < end:
                    t0 = time.perf_counter()
                    events.sendall(b"3 0 1\n3 1 2\n0 0 0\n")
                    used = wait_for(eventq, FRAME)
                    samples.append(time.perf_counter() - t0)
                    repost(used)
                # throughput: frames in batches of 100 lines' worth
                batch = b"3 0 1\n3 1 2\n0 0 0\n" * 100
                count, cpu0 = 0, cpu_seconds(daemon.pid)
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    events.sendall(batch)
                    used = wait_for(eventq, 300)
                    count += len(used)
                    repost(used)
                elapsed = time.perf_counter() - t0
                cpu = cpu_seconds(daemon.pid) - cpu0
                p50, p99 = percentiles(samples)
                print("| events/s | frame p50 µs | frame p99 µs | daemon CPU µs/event |")
                print("|---|---|---|---|")
                print(
                    f"| {count / elapsed:,.0f} | {p50 * 1e6:.0f} | {p99 * 1e6:.0f} "
                    f"| {cpu / count * 1e6:.1f} |"
                )
                print(f"\n{idle_report(daemon.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
