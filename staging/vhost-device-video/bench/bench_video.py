"""Benchmark of vhost-device-video's command path on the null backend (run by hand).

Starts the daemon (`-b null`), plays the draft's driver through the core's Python
frontend, and prints the round trip of one frame (an output resource and an input
resource queued, both answered) as p50/p99, the frames per second with 16 of each in
flight, then the daemon's CPU use while idle and its peak RSS. `--daemon PATH` runs
another binary with the same flags (upstream's, built by hand: none ships here).

    .venv/bin/python staging/vhost-device-video/bench/bench_video.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from vhost_device_video.protocol import (
    HDR,
    MAX_PLANES,
    MEM_ENTRY,
    RESOURCE_CREATE,
    RESOURCE_QUEUE,
    STREAM_CREATE,
    Cmd,
    Format,
    PlanesLayout,
    QueueType,
)
from vhost_user_core.frontend import Frontend, FrontendQueue, GuestRam
from vhost_user_core.testing.bench import daemon_process, idle_report, percentiles, reap_used

DEPTH = 16
FRAME = 640 * 480 * 3 // 2
ROOM = 64


class Commands:
    """Pre-built requests in guest memory, each with its own response buffer."""

    def __init__(self, ram: GuestRam, cmdq: FrontendQueue) -> None:
        self.ram, self.cmdq = ram, cmdq

    def post(self, request: bytes) -> None:
        src, dst = self.ram.alloc(len(request)), self.ram.alloc(ROOM)
        self.ram.memory.write(src, request)
        self.cmdq.driver.add([(src, len(request), False), (dst, ROOM, True)])

    def run(self, request: bytes) -> None:
        self.post(request)
        self.cmdq.publish()
        reap_used(self.cmdq, 1)


def resource_create(queue: int, rid: int, gpa: int, size: int) -> bytes:
    counts = [1, *[0] * (MAX_PLANES - 1)]
    body = RESOURCE_CREATE.pack(
        queue, rid, PlanesLayout.SINGLE_BUFFER, 1, *[0] * MAX_PLANES, *counts
    )
    return HDR.pack(Cmd.RESOURCE_CREATE, 1) + body + MEM_ENTRY.pack(gpa, size)


def resource_queue(queue: int, rid: int, size: int) -> bytes:
    sizes = [size, *[0] * (MAX_PLANES - 1)]
    return HDR.pack(Cmd.RESOURCE_QUEUE, 1) + RESOURCE_QUEUE.pack(
        queue, rid, 0, 1 if size else 0, *sizes
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--daemon", help="another daemon binary, e.g. upstream's")
    args = parser.parse_args()
    command = [args.daemon] if args.daemon else [sys.executable, "-m", "vhost_device_video.main"]
    with tempfile.TemporaryDirectory() as tmp:
        socket = Path(tmp) / "video.sock"
        argv = [*command, "-s", str(socket), "-b", "null"]
        if not args.daemon:
            argv += ["--log-level", "warning"]
        with daemon_process(argv, sockets=[str(socket)]) as daemon:
            with Frontend.connect(socket) as frontend:
                cmdq, _eventq = frontend.start_device(2, 1024, memory_size=64 << 20)
                assert frontend.ram is not None
                ram = frontend.ram
                cmds = Commands(ram, cmdq)
                cmds.run(
                    HDR.pack(Cmd.STREAM_CREATE, 1) + STREAM_CREATE.pack(0, 0, Format.H264, b"")
                )
                for rid in range(DEPTH):
                    cmds.run(resource_create(QueueType.INPUT, rid, ram.alloc(4096, 4096), 4096))
                    cmds.run(resource_create(QueueType.OUTPUT, rid, ram.alloc(FRAME, 4096), FRAME))
                # The requests, built once: reposting them costs the driver nothing.
                frames = []
                for rid in range(DEPTH):
                    pair = []
                    for queue, size in ((QueueType.OUTPUT, 0), (QueueType.INPUT, 1000)):
                        request = resource_queue(queue, rid, size)
                        src, dst = ram.alloc(len(request)), ram.alloc(ROOM)
                        ram.memory.write(src, request)
                        pair.append([(src, len(request), False), (dst, ROOM, True)])
                    frames.append(pair)

                def send(count: int) -> None:
                    for pair in frames[:count]:
                        for chain in pair:
                            cmdq.driver.add(chain)
                    cmdq.publish()
                    reap_used(cmdq, 2 * count)

                samples = []
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    start = time.perf_counter()
                    send(1)
                    samples.append(time.perf_counter() - start)
                p50, p99 = percentiles(samples)
                done, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < args.seconds:
                    send(DEPTH)
                    done += DEPTH
                rate = done / (time.perf_counter() - t0)
                print("| measurement | value |")
                print("|---|---|")
                print(
                    f"| one frame's round trip, p50 / p99 | {p50 * 1e6:.0f} / {p99 * 1e6:.0f} µs |"
                )
                print(f"| frames/s, {DEPTH} in flight | {rate:.0f} |")
                print(f"\n{idle_report(daemon.pid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
