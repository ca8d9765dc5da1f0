"""Benchmark of vhost-device-i2c through the core's Python frontend (run by hand).

Starts the real daemon as a process with the sim bus (`-l sim:80`), plays the
virtio-i2c driver and prints, at 1 and 64 requests in flight: requests/s and p50/p99
latency (a request: one 1-byte read from the EEPROM, its own transfer), then the
daemon's CPU time per request, its CPU use while idle and its peak RSS.

    python3 xtask bench i2c          # or: .venv/bin/python bench/bench_i2c.py
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

ADDR, M_RD = 0x50, 2


def post_reads(frontend: Frontend, queue: FrontendQueue, slots: list[tuple[int, int, int]]) -> None:
    for header, data, status in slots:
        queue.driver.add([(header, 8, False), (data, 1, True), (status, 1, True)])
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
        header = ram.alloc(8)
        ram.memory.write(header, struct.pack("<HHI", ADDR << 1, 0, M_RD))
        slots.append((header, ram.alloc(1), ram.alloc(1)))
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
        base = Path(tmp) / "i2c.sock"
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vhost_device_i2c.main",
                "-s",
                str(base),
                "-l",
                "sim:80",
                "--log-level",
                "warning",
            ]
        )
        try:
            wait_for_socket(f"{base}0")
            with Frontend.connect(f"{base}0") as frontend:
                (queue,) = frontend.start_device(1, 1024)
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
