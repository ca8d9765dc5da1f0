"""Where a depth-1 round trip's time goes, traced (run by hand; needs perf, Debian's
linux-perf, and root or perf_event_paranoid ≤ 1).

Starts vhost-device-rng (and each `--daemon LABEL='CMD {sock}'`, e.g. upstream's),
plays the driver for 64 B requests one at a time, and records the frontend's and the
daemon's sched_switch, sched_wakeup and system calls with `perf record` for `--count`
requests. Printed per daemon, per request: the daemon's system calls by name, its
context switches, how many of its call writes woke a sleeping frontend (the others
landed before the frontend slept), and the four legs of the round trip, p50 and mean
µs: the frontend's kick → the daemon's epoll_wait returns; that → the daemon writes
the call; the call → the frontend's poll returns; the frontend's own turn until the
next kick. Tracing slows every system call a little, and the daemons are traced one
after the other (a trace is not sliced), so compare the p50s; the tails are the
moment's load (the same daemon traced twice differs as much as two daemons do). The
legs pair each kick with the daemon's next wake-up, which holds while each request is
one wake-up each way: across CPUs, the default (`--placement`, as every bench's). On
one CPU the daemon often finds the next request before it sleeps, and the frontend its
answer before it arms the interrupt (fewer epoll_waits and call writes than
requests), so there only the counts mean something.

    .venv/bin/python packages/vhost-core/bench/trace_wakeup.py \\
        --daemon rust='/path/vhost-device-rng --socket-path {sock}'
"""

from __future__ import annotations

import argparse
import bisect
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import (
    Started,
    add_daemon_arg,
    add_placement_arg,
    chosen_daemons,
    each_daemon,
    placements,
    python_daemon,
    reap_used,
)

SIZE = 64
WARM_UP = 2000
#: x86-64 system call numbers of what a round trip does (others print as "NR n").
SYSCALLS = {0: "read", 1: "write", 7: "poll", 19: "readv", 202: "futex", 232: "epoll_wait"}
SYSCALLS |= {281: "epoll_pwait", 441: "epoll_pwait2", 230: "clock_nanosleep"}
EVENTS = "sched:sched_switch,sched:sched_wakeup,raw_syscalls:sys_enter,raw_syscalls:sys_exit"
_LINE = re.compile(r"\s*(\d+)\s+([\d.]+):\s+(\S+):\s+(.*)")
_ENTER = re.compile(r"NR (\d+) \(([0-9a-f]+)")
_EXIT = re.compile(r"NR (\d+) = ")


def requests(queue: FrontendQueue, gpa: int, count: int) -> None:
    for _ in range(count):
        queue.driver.add_writable_batch(1, gpa, SIZE, SIZE)
        queue.publish()
        reap_used(queue, 1)


def record(daemon: Started, queue: FrontendQueue, gpa: int, count: int, out: Path) -> None:
    """`count` requests under `perf record` of this process and the daemon."""
    requests(queue, gpa, WARM_UP)
    pids = f"{os.getpid()},{daemon.process.pid}"
    perf = subprocess.Popen(
        ["perf", "record", "-q", "-o", str(out), "-p", pids, "-e", EVENTS],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # perf attaches
    requests(queue, gpa, count)
    perf.send_signal(signal.SIGINT)
    perf.wait(60)


def analyse(out: Path, bench: int, daemon_tids: set[int], kick_fd: int, count: int) -> None:
    text = subprocess.run(
        ["perf", "script", "-i", str(out), "-F", "tid,time,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kicks: list[float] = []
    woken: list[float] = []  # the daemon's epoll_wait returns
    calls: list[float] = []  # the daemon's first write after each
    answered: list[float] = []  # the frontend's poll returns
    syscalls: Counter[str] = Counter()
    switches = wakes_of_bench = 0
    awake = False
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        tid, at, event, trace = int(match[1]), float(match[2]), match[3], match[4]
        enter = _ENTER.match(trace) if event == "raw_syscalls:sys_enter" else None
        leave = _EXIT.match(trace) if event == "raw_syscalls:sys_exit" else None
        if tid == bench:
            if enter and int(enter[1]) == 1 and int(enter[2], 16) == kick_fd:
                kicks.append(at)
            elif leave and int(leave[1]) == 7:
                answered.append(at)
        elif tid in daemon_tids:
            if enter:
                number = int(enter[1])
                syscalls[SYSCALLS.get(number, f"NR {number}")] += 1
                if number == 1 and awake:
                    calls.append(at)
                    awake = False
            elif leave and int(leave[1]) in (232, 281, 441):
                woken.append(at)
                awake = True
            elif event == "sched:sched_switch":
                switches += 1
            elif event == "sched:sched_wakeup" and f"pid={bench} " in trace:
                wakes_of_bench += 1
    legs: dict[str, list[float]] = {"kick → daemon wakes": [], "→ daemon's call": []}
    legs |= {"call → frontend wakes": [], "frontend's turn": []}
    for kick in kicks:
        i = bisect.bisect_left(woken, kick)
        j = bisect.bisect_left(calls, woken[i]) if i < len(woken) else len(calls)
        k = bisect.bisect_left(answered, calls[j]) if j < len(calls) else len(answered)
        if k >= len(answered):
            break
        n = bisect.bisect_left(kicks, answered[k])
        legs["kick → daemon wakes"].append(woken[i] - kick)
        legs["→ daemon's call"].append(calls[j] - woken[i])
        legs["call → frontend wakes"].append(answered[k] - calls[j])
        if n < len(kicks):
            legs["frontend's turn"].append(kicks[n] - answered[k])
    per = ", ".join(f"{name} {n / count:.2f}" for name, n in syscalls.most_common())
    print(f"  system calls per request: {per}")
    print(
        f"  context switches per request: {switches / count:.2f}; call writes that woke "
        f"the frontend: {wakes_of_bench} of {count}"
    )
    for name, samples in legs.items():
        if samples:
            p50, mean = statistics.median(samples) * 1e6, statistics.fmean(samples) * 1e6
            slow = sum(1 for s in samples if s > 500e-6)
            print(f"  {name:<22} p50 {p50:6.1f} µs, mean {mean:7.1f} µs, > 0.5 ms: {slow}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="requests traced per daemon")
    add_daemon_arg(parser)
    add_placement_arg(parser, default="two")
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, python_daemon("vhost_device_rng.main", "-s {sock}"))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = each_daemon(
            daemons,
            Path(tmp) / "rng.sock",
            stack,
            extra=["--log-level", "warning"],
            stderr=subprocess.DEVNULL,
        )
        queues = []
        for daemon in running:
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            (queue,) = frontend.start_device(1, 256)
            assert frontend.ram is not None
            queues.append((daemon, queue, frontend.ram.alloc(SIZE)))
        for placement in placements(args.placement):
            print(f"{args.count:,} requests of {SIZE} B, one at a time, {placement.name}")
            for daemon, queue, gpa in queues:
                placement.apply(daemon.process.pid)
                out = Path(tmp) / f"{daemon.label}.data"
                record(daemon, queue, gpa, args.count, out)
                tids = {int(t) for t in os.listdir(f"/proc/{daemon.process.pid}/task")}
                print(f"{daemon.label} ({len(tids)} threads):")
                analyse(out, os.getpid(), tids, queue.kick_fd, args.count)
                out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
