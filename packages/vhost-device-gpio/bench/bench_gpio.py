"""Benchmark of vhost-device-gpio through the core's Python frontend (run by hand).

Starts the real daemon as a process with a 64-line mock chip and --mock-control, plays
the guest driver (queue size 256) and prints: GET_VALUE requests/s at 1 and 64 in
flight with p50/p99 latency; interrupt latency from a `SET` written to --mock-control
to the event buffer's used-ring entry, p50/p99; the daemon's CPU while 64 lines wait
for interrupts; its peak RSS. `--daemon LABEL='CMD {sock}'` adds another
implementation, measured in the same run, alternating, each row with its ratio to ours
(`{ctl}` in its command, if it has a mock control socket). Each measurement runs with
the daemon on the bench's CPU and on another (`--placement`), and each row says which.

    python3 xtask bench gpio          # or: .venv/bin/python bench/bench_gpio.py
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    Ratios,
    Started,
    add_daemon_arg,
    add_placement_arg,
    chosen_daemons,
    percentiles,
    placed_rounds,
    print_floors,
    python_daemon,
    started,
)
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

LINES = 64
GET_VALUE, IRQ_TYPE = 4, 6
EDGE_BOTH = 3


class Driver:
    """Pre-allocated request slots (one request and response buffer each)."""

    def __init__(self, frontend: Frontend, slots: int) -> None:
        self.requestq, self.eventq = frontend.start_device(2, 256)
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.req = [self.ram.alloc(8) for _ in range(slots)]
        self.res = [self.ram.alloc(2) for _ in range(slots)]

    def post(self, queue: FrontendQueue, slot: int, data: bytes, room: int) -> int:
        self.ram.memory.write(self.req[slot], data)
        head = queue.driver.add([(self.req[slot], len(data), False), (self.res[slot], room, True)])
        return head

    def request(self, line: int, type_: int, value: int = 0) -> bytes:
        self.post(self.requestq, 0, struct.pack("<HHI", type_, line, value), 2)
        self.requestq.publish()
        self.requestq.wait_used(1)
        return self.ram.memory.read(self.res[0], 2)


def requests_per_second(driver: Driver, depth: int, seconds: float) -> tuple[float, list[float]]:
    q = driver.requestq
    latencies: list[float] = []
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sent = time.perf_counter()
        for slot in range(depth):
            driver.post(q, slot, struct.pack("<HHI", GET_VALUE, slot % LINES, 0), 2)
        q.publish()
        q.wait_used(depth)
        latencies.append((time.perf_counter() - sent) * 1e6)
        done += depth
    return done / (time.perf_counter() - start), latencies


def interrupt_latency(driver: Driver, control: socket.socket, rounds: int) -> list[float]:
    reader = control.makefile("r")
    line, level, latencies = 0, 0, []
    for _ in range(rounds):
        driver.post(driver.eventq, LINES, struct.pack("<H", line), 1)
        driver.eventq.publish()
        time.sleep(0.002)  # let the daemon take the buffer first: measure the interrupt
        level ^= 1
        start = time.perf_counter()
        control.sendall(f"SET 0 {line} {level}\n".encode())
        driver.eventq.wait_used(1)
        latencies.append((time.perf_counter() - start) * 1e6)
        assert reader.readline() == "OK\n"
    return latencies


OURS_COMMAND = python_daemon(
    "vhost_device_gpio.main", f"-s {{sock}} -l s{LINES} --mock-control {{ctl}}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1000)
    add_daemon_arg(parser)
    add_placement_arg(parser)
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, OURS_COMMAND)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running: list[tuple[Started, Driver, bool]] = []
        for command in daemons:
            ctl = Path(tmp) / f"gpio.{command.label}.ctl"
            daemon = stack.enter_context(
                started(
                    command,
                    Path(tmp) / f"gpio.{command.label}.sock",
                    fields={"ctl": ctl},
                    extra=["--log-level", "warning"],
                )
            )
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            running.append((daemon, Driver(frontend, LINES + 1), "{ctl}" in command.template))
        ratio = Ratios()
        print("| placement | daemon | in flight | requests/s | × ours | p50 µs | p99 µs |")
        print("|---|---|---|---|---|---|---|")
        pid = lambda entry: entry[0].process.pid  # noqa: E731
        for where, depth, (daemon, driver, _) in placed_rounds(
            (1, 64), running, pid, args.placement
        ):
            rate, lat = requests_per_second(driver, depth, args.seconds)
            p50, p99 = percentiles(lat)
            times = ratio((where.name, depth), daemon.label, rate)
            print(
                f"| {where.name} | {daemon.label} | {depth} | {rate:,.0f} | {times} "
                f"| {p50:.1f} | {p99:.1f} |"
            )
        print("\ninterrupt latency (--mock-control SET to used entry; a daemon without")
        print("`{ctl}` in its command has no control socket):")
        for _, driver, controlled in running:
            for line in range(LINES if controlled else 0):
                assert driver.request(line, IRQ_TYPE, EDGE_BOTH) == b"\x00\x00"
        for where, _, (daemon, driver, controlled) in placed_rounds(
            ["irq"], running, pid, args.placement
        ):
            if not controlled:
                print(f"  {where.name}, {daemon.label}: not measured")
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as control:
                control.connect(str(Path(tmp) / f"gpio.{daemon.label}.ctl"))
                p50, p99 = percentiles(interrupt_latency(driver, control, args.rounds))
            print(f"  {where.name}, {daemon.label}: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        print_floors(args.placement)
        for daemon, driver, _ in running:
            # Every line waits with a buffer posted (the request slots are free now).
            for line in range(LINES):
                driver.post(driver.eventq, line, struct.pack("<H", line), 1)
            driver.eventq.publish()
            time.sleep(0.5)
            before = cpu_seconds(daemon.process.pid)
            time.sleep(5.0)
            idle = cpu_seconds(daemon.process.pid) - before
            print(
                f"{daemon.label}: idle CPU with {LINES} lines waiting: {idle:.3f} s over 5 s; "
                f"peak RSS {peak_rss_kib(daemon.process.pid) / 1024:.1f} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
