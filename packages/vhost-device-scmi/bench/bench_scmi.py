"""Benchmark of vhost-device-scmi through the core's Python frontend (run by hand).

Starts the real daemon as a process with one fake accelerometer (`-d fake`), plays
the virtio-scmi driver and prints, at 1 and 64 commands in flight: SENSOR_READING_GET
requests/s and p50/p99 latency, then the daemon's CPU time per request, its CPU use
while idle and its peak RSS.

    python3 xtask bench scmi         # or: .venv/bin/python bench/bench_scmi.py
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import daemon_process, idle_report, percentiles, reap_used
from vhost_user_core.testing.procstat import cpu_seconds

READING_GET = struct.pack("<III", 0x15 << 10 | 0x6, 0, 0)  # sensor 0, synchronous
REPLY = 8 + 3 * 16


def post_reads(frontend: Frontend, queue: FrontendQueue, slots: list[tuple[int, int]]) -> None:
    for header, data in slots:
        queue.driver.add([(header, len(READING_GET), False), (data, REPLY, True)])
    queue.publish()


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
        reap_used(queue, depth)
        samples.append(time.perf_counter() - t0)
    return depth * len(samples), samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per depth")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "scmi.sock"
        argv = [
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
        with daemon_process(argv, [str(base)]) as daemon:
            with Frontend.connect(str(base)) as frontend:
                queue, _ = frontend.start_device(2, 1024)
                print("| in flight | requests/s | p50 µs | p99 µs | daemon CPU µs/request |")
                print("|---|---|---|---|---|")
                for depth in (1, 64):
                    cpu0 = cpu_seconds(daemon.pid)
                    count, samples = run(frontend, queue, depth, args.seconds)
                    cpu = cpu_seconds(daemon.pid) - cpu0
                    p50, p99 = percentiles(samples)
                    print(
                        f"| {depth} | {count / sum(samples):,.0f} | {p50 * 1e6:.0f} "
                        f"| {p99 * 1e6:.0f} "
                        f"| {cpu / count * 1e6:.1f} |"
                    )
                print(f"\n{idle_report(daemon.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
