"""Benchmark of vhost-device-scmi through the core's Python frontend (run by hand).

Starts the real daemon as a process with one fake accelerometer (`-d fake`), plays
the virtio-scmi driver and prints, at 1 and 64 commands in flight: SENSOR_READING_GET
requests/s and p50/p99 latency, then the daemon's CPU time per request, its CPU use
while idle and its peak RSS. `--daemon LABEL='CMD {sock}'` adds another implementation,
measured in the same run, alternating, each row with its ratio to ours. Each
measurement runs with the daemon on the bench's CPU and on another (`--placement`),
and each row says which; it is taken in slices, the daemons alternating (`--slices`).

    python3 xtask bench scmi         # or: .venv/bin/python bench/bench_scmi.py
"""

from __future__ import annotations

import struct
import sys

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import python_daemon, request_bench_main, timed_rounds

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
    return timed_rounds(lambda: post_reads(frontend, queue, slots), queue, depth, seconds)


OURS_COMMAND = python_daemon("vhost_device_scmi.main", "-s {sock} -d fake")


def main() -> int:
    return request_bench_main(__doc__.splitlines()[0], OURS_COMMAND, "scmi.sock", 2, run)


if __name__ == "__main__":
    sys.exit(main())
