"""Benchmark of vhost-device-scmi through the core's Python frontend (run by hand).

Starts the real daemon as a process with one fake accelerometer (`-d fake`), plays
the virtio-scmi driver and prints, at 1 and 64 commands in flight: SENSOR_READING_GET
requests/s and p50/p99 latency, then the daemon's CPU time per request, its CPU use
while idle and its peak RSS.

    python3 xtask bench scmi         # or: .venv/bin/python bench/bench_scmi.py
"""

from __future__ import annotations

import argparse
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

READING_GET = struct.pack("<III", 0x15 << 10 | 0x6, 0, 0)  # sensor 0, synchronous
REPLY = 8 + 3 * 16


def post_reads(frontend: Frontend, queue: FrontendQueue, slots: list[tuple[int, int]]) -> None:
    for header, data in slots:
        queue.driver.add([(header, len(READING_GET), False), (data, REPLY, True)])
    queue.publish()


def wait_for(queue: FrontendQueue, count: int) -> None:
    done = 0
    while done < count:
        got, _ = queue.driver.reap()
        if not got:
            queue.driver.arm_interrupt()
            got, _ = queue.driver.reap()
            if not got and not queue.wait_call(5.0):
                raise TimeoutError("the device did not answer in 5 s")
        done += got


def run(
    frontend: Frontend, queue: FrontendQueue, depth: int, seconds: float
) -> tuple[int, list[float]]:
    """Rounds of `depth` separate requests; a sample is one round's time (an upper
    bound of each of its requests' latency)."""
    assert frontend.ram is not None
    ram = frontend.ram
    slots = []
    for _ in range(depth):
        header = ram.alloc(len(READING_GET))
        ram.memory.write(header, READING_GET)
        slots.append((header, ram.alloc(REPLY)))
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        post_reads(frontend, queue, slots)
        wait_for(queue, depth)
        samples.append(time.perf_counter() - t0)
    return depth * len(samples), samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per depth")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "scmi.sock"
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vhost_device_scmi.main",
                "-s",
                str(base),
                "-d",
                "fake",
                "--log-level",
                "warning",
            ]
        )
        try:
            wait_for_socket(str(base))
            with Frontend.connect(str(base)) as frontend:
                queue, _ = frontend.start_device(2, 1024)
                print("| in flight | requests/s | p50 µs | p99 µs | daemon CPU µs/request |")
                print("|---|---|---|---|---|")
                for depth in (1, 64):
                    cpu0 = cpu_seconds(daemon.pid)
                    count, samples = run(frontend, queue, depth, args.seconds)
                    cpu = cpu_seconds(daemon.pid) - cpu0
                    ordered = sorted(samples)
                    p50 = statistics.median(ordered) * 1e6
                    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6
                    print(
                        f"| {depth} | {count / sum(samples):,.0f} | {p50:.0f} | {p99:.0f} "
                        f"| {cpu / count * 1e6:.1f} |"
                    )
                idle0 = cpu_seconds(daemon.pid)
                time.sleep(2.0)
                idle = cpu_seconds(daemon.pid) - idle0
                print(
                    f"\ndaemon CPU while idle for 2 s: {idle:.3f} s; "
                    f"peak RSS {peak_rss_kib(daemon.pid) / 1024:.1f} MiB"
                )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
