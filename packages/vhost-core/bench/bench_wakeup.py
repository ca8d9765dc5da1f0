"""Where a depth-1 round trip goes (run by hand): kick → worker → handle_queue → used → call.

Each stage is the one before it plus one layer of the core, served by a child process
that the parent pings one request at a time:

| stage | the child |
|---|---|
| `eventfd` | blocks in `os.eventfd_read`, writes the call: two wake-ups, bare |
| `epoll` | the same through a `select.epoll` loop, as a worker sleeps |
| `worker` | the core's `Worker`: its loop, the lock, a reader callback per kick |
| `null` | a real daemon (`Session`, `Vring`) completing every chain empty |
| `zero` | the same, filling each chain with zeros: the README's whole device |
| `rng` | vhost-device-rng reading /dev/urandom |

The device stages are driven through the frontend, as the rng bench drives them.

Printed per stage: round trips/s, p50 µs, and the child's CPU per round trip (all its
threads, from /proc); with both pinned to one CPU (the default `--placement one`) every
CPU cycle of the child is on the round trip, so the differences between stages are what
each layer costs (`--placement two` or `both`: the child on another CPU too, where each
round trip is two inter-processor wake-ups, `testing.bench`'s placements). With
`--callgrind N` each child runs under valgrind's callgrind for N and 3N round trips
instead, and the difference gives instructions per round trip: counts, not time, so
they hold on a loaded machine. `--daemon LABEL='CMD {sock}'` adds another daemon as a
stage of its own (e.g. upstream's rng, to see what a round trip costs it).

    .venv/bin/python packages/vhost-core/bench/bench_wakeup.py \
        [--seconds 2] [--callgrind 2000] [--placement both]
"""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vhost_user_core import (
    STANDARD_FEATURES,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    add_socket_args,
    open_listeners,
    run_daemon,
)
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.bench import (
    DaemonCommand,
    add_daemon_arg,
    add_placement_arg,
    callgrind_total,
    daemon_process,
    find_sockets,
    percentiles,
    placements,
)
from vhost_user_core.testing.procstat import cpu_seconds

SIZE = 64  # bytes per request, as the rng bench's small case
QUEUE_SIZE = 256
WARM_UP = 200  # round trips before measuring: the child's start-up is not counted
BARE = ("eventfd", "epoll", "worker")
DEVICES = ("null", "zero", "rng")


# -- the children ----------------------------------------------------------------------


def child_eventfd(kick: int, call: int, count: int) -> None:
    for _ in range(count):
        os.eventfd_read(kick)
        os.eventfd_write(call, 1)


def child_epoll(kick: int, call: int, count: int) -> None:
    poller = select.epoll()
    poller.register(kick, select.EPOLLIN)
    done = 0
    while done < count:
        for _fd, _mask in poller.poll(-1):
            os.eventfd_read(kick)
            os.eventfd_write(call, 1)
            done += 1


def child_worker(kick: int, call: int, count: int) -> None:
    from vhost_user_core.worker import Worker

    finished = threading.Event()
    worker = Worker("bench-worker", threading.RLock())
    done = [0]

    def kicked() -> None:
        os.eventfd_read(kick)
        os.eventfd_write(call, 1)
        done[0] += 1
        if done[0] == count:
            finished.set()

    worker.add_reader(kick, kicked)
    worker.start()
    finished.wait()
    worker.stop()


class NullBackend(VhostUserBackend):
    """Completes every chain with nothing written: the ring machinery alone."""

    name = "bench-null"
    num_queues = 1
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            vring.complete(batch, [0] * len(batch))


class ZeroBackend(NullBackend):
    """The core README's whole device: zeros into every buffer."""

    name = "bench-zero"

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            lengths = batch.writable_lengths()
            batch.scatter(bytes(sum(lengths)), lengths)
            vring.complete(batch, lengths)


def child_device(kind: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_socket_args(parser)
    args = parser.parse_args(argv)
    run_daemon(NullBackend if kind == "null" else ZeroBackend, open_listeners(args))


# -- the parent ------------------------------------------------------------------------


def pinned(cpu: int | None) -> Callable[[], None]:
    """A child's preexec_fn: on `cpu` (None: where the scheduler puts it)."""
    return lambda: None if cpu is None else os.sched_setaffinity(0, {cpu})


#: Other daemons (`--daemon LABEL=CMD`), measured as device stages by their labels.
OTHERS: dict[str, DaemonCommand] = {}


def child_argv(stage: str, *rest: str) -> list[str]:
    if stage in OTHERS:
        return OTHERS[stage].argv(sock=rest[1])
    if stage == "rng":
        return [sys.executable, "-m", "vhost_device_rng.main", *rest, "--log-level", "warning"]
    return [sys.executable, __file__, "--child", stage, *rest]


def ping_bare(
    stage: str, count: int, cpu: int | None, wrap: list[str]
) -> tuple[list[float], float]:
    """`count` round trips with a bare child; (samples, child CPU seconds)."""
    kick = os.eventfd(0, os.EFD_CLOEXEC)
    call = os.eventfd(0, os.EFD_CLOEXEC)
    proc = subprocess.Popen(
        [*wrap, *child_argv(stage, str(kick), str(call), str(WARM_UP + count + 1))],
        pass_fds=(kick, call),
        preexec_fn=pinned(cpu),
    )
    samples = []
    try:
        for i in range(WARM_UP + count):
            if i == WARM_UP:
                cpu0 = cpu_seconds(proc.pid)
            t0 = time.perf_counter()
            os.eventfd_write(kick, 1)
            os.eventfd_read(call)
            samples.append(time.perf_counter() - t0)
        samples = samples[WARM_UP:]
        cpu_used = cpu_seconds(proc.pid) - cpu0
        os.eventfd_write(kick, 1)  # the last one, after the reading: the child's
        os.eventfd_read(call)  # threads are all still there when it is taken
    finally:
        proc.wait(600)
        os.close(kick)
        os.close(call)
    return samples, cpu_used


def ping_device(
    stage: str, count: int, cpu: int | None, wrap: list[str]
) -> tuple[list[float], float]:
    """`count` depth-1 requests of SIZE bytes through the frontend; (samples, the
    daemon's CPU seconds while they ran)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "wake.sock"
        argv = [*wrap, *child_argv(stage, "-s", str(base))]
        with daemon_process(argv, preexec_fn=pinned(cpu)) as proc:
            (path,) = find_sockets(base, process=proc, timeout=600)
            with Frontend.connect(path) as frontend:
                (queue,) = frontend.start_device(1, QUEUE_SIZE)
                assert frontend.ram is not None
                gpa = frontend.ram.alloc(SIZE)
                driver = queue.driver
                samples = []
                for i in range(WARM_UP + count):
                    if i == WARM_UP:
                        cpu0 = cpu_seconds(proc.pid)
                    t0 = time.perf_counter()
                    driver.add_writable_batch(1, gpa, SIZE, SIZE)
                    queue.publish()
                    while True:
                        done, _ = driver.reap()
                        if done:
                            break
                        driver.arm_interrupt()
                        done, _ = driver.reap()
                        if done:
                            break
                        if not queue.wait_call(600):
                            raise TimeoutError("no answer")
                    samples.append(time.perf_counter() - t0)
                return samples[WARM_UP:], cpu_seconds(proc.pid) - cpu0


def ping(
    stage: str, count: int, cpu: int | None, wrap: tuple[str, ...] = ()
) -> tuple[list[float], float]:
    run = ping_bare if stage in BARE else ping_device
    return run(stage, count, cpu, list(wrap))


def rate_for(stage: str, seconds: float, cpu: int | None) -> int:
    """A request count that takes about `seconds` for this stage."""
    samples, _ = ping(stage, 2000, cpu)
    return max(2000, int(seconds / (sum(samples) / len(samples))))


def stage_instructions(stage: str, count: int, cpu: int | None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"]
        ping(stage, count, cpu, tuple(wrap))
        return callgrind_total(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=2.0, help="per stage")
    parser.add_argument("--stage", action="append", choices=[*BARE, *DEVICES])
    parser.add_argument("--callgrind", type=int, metavar="N", help="count instructions instead")
    add_daemon_arg(parser)
    add_placement_arg(parser, default="one")
    args, rest = parser.parse_known_args()
    if args.child in BARE:
        kick, call, count = map(int, rest)
        {"eventfd": child_eventfd, "epoll": child_epoll, "worker": child_worker}[args.child](
            kick, call, count
        )
        return 0
    if args.child:
        child_device(args.child, rest)
        return 0
    OTHERS.update((d.label, d) for d in args.daemon)
    stages = (args.stage or [*BARE, *DEVICES]) + list(OTHERS)
    for placement in placements(args.placement):
        # Each child is started pinned (preexec_fn), so every thread it starts is too.
        placement.apply(os.getpid())
        theirs = placement.daemon_cpu
        print(f"depth-1 round trips, {SIZE} B, {placement.name}, Python {sys.version.split()[0]}")
        print()
        if args.callgrind:
            n = args.callgrind
            print("| stage | child instructions per round trip |")
            print("|---|---|")
            for stage in stages:
                total = stage_instructions(stage, 3 * n, theirs) - stage_instructions(
                    stage, n, theirs
                )
                print(f"| {stage} | {total / (2 * n):,.0f} |")
            print()
            continue
        print("| stage | round trips/s | p50 µs | p99 µs | child CPU µs per round trip |")
        print("|---|---|---|---|---|")
        for stage in stages:
            count = rate_for(stage, args.seconds, theirs)
            samples, cpu = ping(stage, count, theirs)
            p50, p99 = percentiles(samples)
            print(
                f"| {stage} | {len(samples) / sum(samples):,.0f} | {p50 * 1e6:.1f} "
                f"| {p99 * 1e6:.1f} | {cpu / count * 1e6:.2f} |"
            )
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
