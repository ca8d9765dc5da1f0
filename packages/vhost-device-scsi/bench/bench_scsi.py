"""Benchmark of vhost-device-scsi (run by hand, never in tests).

Starts each daemon on an image (on tmpfs and on disk), plays the virtio-scsi driver
through the core's Python frontend and prints, per workload, IOPS, MB/s, the ratio to
ours and the daemon's CPU time per I/O: 4 KiB random reads and writes at queue depth
1 and 32, 1 MiB sequential reads and writes at depth 4; then each daemon's CPU while
idle and its peak RSS. `--daemon LABEL='COMMAND {sock} {image}'` (repeatable) adds
another implementation (upstream's binary, say); every daemon is connected at once
and the workloads alternate between them, so the machine's load falls on all alike.
The label `ours` replaces our own command (to pin it with taskset, say).

    .venv/bin/python packages/vhost-device-scsi/bench/bench_scsi.py
    .venv/bin/python packages/vhost-device-scsi/bench/bench_scsi.py \\
        --daemon upstream='/path/to/vhost-device-scsi -s {sock} {image}'
    taskset -c 0 .venv/bin/python packages/vhost-device-scsi/bench/bench_scsi.py \\
        --daemon ours='taskset -c 1 .venv/bin/python -m vhost_device_scsi.main -s {sock} {image}' \\
        --daemon upstream='taskset -c 1 /path/to/vhost-device-scsi -s {sock} {image}'
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    DaemonCommand,
    Ratios,
    add_daemon_arg,
    chosen_daemons,
    daemon_process,
    idle_report,
    python_daemon,
    rounds,
)
from vhost_user_core.testing.procstat import cpu_seconds

IMAGE_SIZE = 256 << 20
REQ, RESP = 51, 108
OURS = python_daemon("vhost_device_scsi.main", "--log-level warning -s {sock} {image}")


@dataclass(frozen=True)
class Workload:
    name: str
    block: int
    depth: int
    write: bool
    sequential: bool


WORKLOADS = (
    Workload("4 KiB random read, QD1", 4096, 1, False, False),
    Workload("4 KiB random read, QD32", 4096, 32, False, False),
    Workload("4 KiB random write, QD1", 4096, 1, True, False),
    Workload("4 KiB random write, QD32", 4096, 32, True, False),
    Workload("1 MiB sequential read, QD4", 1 << 20, 4, False, True),
    Workload("1 MiB sequential write, QD4", 1 << 20, 4, True, True),
)


def header(lba: int, blocks: int, write: bool, tag: int) -> bytes:
    cdb = struct.pack(">BBIBHB", 0x2A if write else 0x28, 0, lba, 0, blocks, 0).ljust(32, b"\0")
    return bytes((1, 0, 0x40, 0)) + bytes(4) + struct.pack("<QBBB", tag, 0, 0, 0) + cdb


def run(
    frontend: Frontend, queue: FrontendQueue, w: Workload, seconds: float, pid: int
) -> tuple[float, float]:
    """IOPS and daemon CPU seconds per I/O."""
    assert frontend.ram is not None
    ram, mem = frontend.ram, frontend.ram.memory
    slots = [(ram.alloc(REQ), ram.alloc(RESP), ram.alloc(w.block, 4096)) for _ in range(w.depth)]
    for _, _, data in slots:
        mem.write(data, os.urandom(w.block))
    blocks, span = w.block // 512, IMAGE_SIZE // w.block
    rng = random.Random(1)
    position = [0]

    def post(slot: int, tag: int) -> int:
        req, resp, data = slots[slot]
        if w.sequential:
            index, position[0] = position[0], (position[0] + 1) % span
        else:
            index = rng.randrange(span)
        mem.write(req, header(index * blocks, blocks, w.write, tag))
        io = (data, w.block, not w.write)
        chain = (
            [(req, REQ, False), io, (resp, RESP, True)]
            if w.write
            else [(req, REQ, False), (resp, RESP, True), io]
        )
        return queue.driver.add(chain)

    slot_of = {post(i, i): i for i in range(w.depth)}
    queue.publish()
    done, cpu0, t0 = 0, cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        used = queue.driver.get_used()
        if not used:
            queue.driver.arm_interrupt()
            used = queue.driver.get_used()
            if not used:
                if not queue.wait_call(5.0):
                    raise TimeoutError("no completion in 5 s")
                continue
        # get_used freed every reaped chain's descriptors: take all their slots
        # before posting again, or a new chain reuses a head still in `used`.
        freed = [slot_of.pop(head) for head, _length in used]
        for slot in freed:
            if mem.read(slots[slot][1] + 10, 2) != b"\0\0":  # status, response
                raise RuntimeError(f"request failed: {mem.read(slots[slot][1], 12).hex()}")
            slot_of[post(slot, done)] = slot
            done += 1
        queue.publish()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    while slot_of:  # let the last ones finish before the next workload
        for head, _ in queue.wait_used(1):
            slot_of.pop(head, None)
    return done / elapsed, cpu / max(done, 1)


@dataclass
class Connected:
    label: str
    pid: int
    frontend: Frontend
    queue: FrontendQueue


@contextmanager
def connected(daemon: DaemonCommand, image: Path) -> Iterator[Connected]:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "scsi.sock"
        # Upstream serves one connection and exits: no probe connection, wait for the
        # socket file (connect retries until it listens).
        with daemon_process(daemon.argv(sock=sock, image=image)) as process:
            while not sock.exists() and process.poll() is None:
                time.sleep(0.02)
            with Frontend.connect(sock) as frontend:
                queues = frontend.start_device(3, 128, memory_size=64 << 20)
                yield Connected(daemon.label, process.pid, frontend, queues[2])


def bench(daemons: list[DaemonCommand], image: Path, seconds: float) -> None:
    ratio = Ratios()
    with ExitStack() as stack:
        conns = [stack.enter_context(connected(d, image)) for d in daemons]
        for w, c in rounds(WORKLOADS, conns):
            iops, cpu = run(c.frontend, c.queue, w, seconds, c.pid)
            print(
                f"| {c.label} | {image.parent} | {w.name} | {iops:,.0f} "
                f"| {iops * w.block / 1e6:,.1f} | {ratio(w.name, c.label, iops)} "
                f"| {cpu * 1e6:.1f} |",
                flush=True,
            )
        # Idle while still connected: upstream exits once the frontend leaves.
        time.sleep(0.5)
        for c in conns:
            print(f"| {c.label} | {image.parent} | idle, connected | {idle_report(c.pid)} | | | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per workload")
    add_daemon_arg(parser)
    parser.add_argument(
        "--dirs", default="/dev/shm,/var/tmp", help="where the images go (tmpfs, disk)"
    )
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, OURS)
    print("| daemon | image in | workload | IOPS | MB/s | × ours | daemon CPU µs per I/O |")
    print("|---|---|---|---|---|---|---|")
    for where in args.dirs.split(","):
        image = Path(where) / f"bench-scsi-{os.getpid()}.img"
        with image.open("wb") as f:
            for _ in range(IMAGE_SIZE >> 20):
                f.write(os.urandom(1 << 20))
        try:
            bench(daemons, image, args.seconds)
        finally:
            image.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
