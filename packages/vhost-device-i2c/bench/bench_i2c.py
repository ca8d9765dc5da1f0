"""Benchmark of vhost-device-i2c through the core's Python frontend (run by hand).

Starts the real daemon as a process with the sim bus (`-l sim:80`), plays the
virtio-i2c driver and prints, at 1 and 64 requests in flight: requests/s and p50/p99
latency (a request: one 1-byte read from the EEPROM, its own transfer), then the
daemon's CPU time per request, its CPU use while idle and its peak RSS.
`--daemon LABEL='CMD {sock}'` adds another implementation, measured in the same run,
alternating, each row with its ratio to ours. Each measurement runs with the daemon on
the bench's CPU and on another (`--placement`), and each row says which; it is taken
in slices, the daemons alternating (`--slices`).

    python3 xtask bench i2c          # or: .venv/bin/python bench/bench_i2c.py
"""

from __future__ import annotations

import struct
import sys

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import python_daemon, request_bench_main, timed_rounds

ADDR, M_RD = 0x50, 2


def post_reads(frontend: Frontend, queue: FrontendQueue, slots: list[tuple[int, int, int]]) -> None:
    for header, data, status in slots:
        queue.driver.add([(header, 8, False), (data, 1, True), (status, 1, True)])
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
        header = ram.alloc(8)
        ram.memory.write(header, struct.pack("<HHI", ADDR << 1, 0, M_RD))
        slots.append((header, ram.alloc(1), ram.alloc(1)))
    return timed_rounds(lambda: post_reads(frontend, queue, slots), queue, depth, seconds)


OURS_COMMAND = python_daemon("vhost_device_i2c.main", "-s {sock} -l sim:80")


def main() -> int:
    return request_bench_main(__doc__.splitlines()[0], OURS_COMMAND, "i2c.sock", 1, run)


if __name__ == "__main__":
    sys.exit(main())
