"""The pieces every device benchmark repeats, in one place so that their numbers are
measured and printed the same way: the daemon as a process, a driver's reaping of used
entries, p50/p99 of latency samples, the closing idle-CPU and peak-RSS line, and the
side-by-side run: `--daemon LABEL='CMD {sock}'` (repeatable) adds another
implementation, every measurement alternates between all daemons in one run, and each
row carries its ratio to ours (the default daemon and the baseline). A depth-1 figure
depends on where the daemon runs (one wake-up on a shared CPU is a context switch,
across CPUs an inter-processor interrupt), so a bench can take each measurement with
both placements (`--placement`, `placed_rounds`) and say which a row is."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

C = TypeVar("C")
D = TypeVar("D")


@contextmanager
def daemon_process(
    argv: Sequence[str], sockets: Sequence[str] = (), **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """Start the daemon, wait until it listens on each of `sockets`, and SIGTERM it at
    the end (a benchmark measures the real process, as a VMM would run it)."""
    process: subprocess.Popen[bytes] = subprocess.Popen(argv, **popen)
    try:
        for path in sockets:
            wait_for_socket(path, proc=process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def reap_used(queue: FrontendQueue, count: int, timeout: float = 5.0) -> None:
    """Wait until `count` more used entries, arming the interrupt before sleeping as a
    guest driver does; counts only (cheaper than `FrontendQueue.wait_used`'s list), and
    `timeout` bounds each wait for an interrupt."""
    done = 0
    while done < count:
        got, _ = queue.driver.reap()
        if not got:
            queue.driver.arm_interrupt()
            got, _ = queue.driver.reap()
            if not got and not queue.wait_call(timeout):
                raise TimeoutError(f"the device did not answer in {timeout:g} s")
        done += got


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) of `samples`: the median, and the sample below which 99 % lie."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]


def idle_report(pid: int, seconds: float = 2.0) -> str:
    """Sleep `seconds` and say how much CPU the daemon took meanwhile (an idle device
    should take none) and its peak RSS."""
    idle0 = cpu_seconds(pid)
    time.sleep(seconds)
    idle = cpu_seconds(pid) - idle0
    return (
        f"daemon CPU while idle for {seconds:g} s: {idle:.3f} s; "
        f"peak RSS {peak_rss_kib(pid) / 1024:.1f} MiB"
    )


# Side by side: every measurement against several daemons in one run, alternating.

#: The label of our own daemon: always measured, first in each round, the ratios' baseline.
OURS = "ours"


@dataclass(frozen=True)
class DaemonCommand:
    """A labelled daemon command line; `{sock}` (and any other field a bench names, e.g.
    `{uds}`) is filled in per word after shell-style splitting, so paths need no quoting."""

    label: str
    template: str

    def argv(self, **fields: object) -> list[str]:
        try:
            return [word.format(**fields) for word in shlex.split(self.template)]
        except (KeyError, IndexError) as exc:
            known = ", ".join("{" + name + "}" for name in fields)
            raise ValueError(
                f"--daemon {self.label}: unknown field {exc} (this bench fills {known})"
            ) from None


def under_callgrind(daemon: DaemonCommand, out: str | os.PathLike[str]) -> DaemonCommand:
    """`daemon` run under valgrind's callgrind, which writes its count of user-space
    instructions to `out` when it exits: the same for the same work whatever else the
    machine does, so two implementations compare without noise."""
    out_arg = shlex.quote(f"--callgrind-out-file={os.fspath(out)}")
    return DaemonCommand(daemon.label, f"valgrind --tool=callgrind -q {out_arg} {daemon.template}")


def callgrind_total(out: str | os.PathLike[str]) -> int:
    """The instruction total in a callgrind output file."""
    match = re.search(r"^(?:summary|totals):\s+(\d+)", Path(out).read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no totals in callgrind's output {out}")
    return int(match.group(1))


def python_daemon(module: str, flags: str) -> str:
    """The command template of one of our daemons run by this interpreter."""
    return f"{shlex.quote(sys.executable)} -m {module} {flags}"


def parse_daemon(text: str) -> DaemonCommand:
    """`LABEL=COMMAND`, the argparse type of `--daemon`."""
    label, sep, template = text.partition("=")
    label = label.strip()
    if not sep or not label or not template.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL='COMMAND with {{sock}}'")
    return DaemonCommand(label, template)


def add_daemon_arg(parser: argparse.ArgumentParser) -> None:
    """The one spelling every bench takes: `--daemon LABEL='COMMAND'`, repeatable."""
    parser.add_argument(
        "--daemon",
        action="append",
        type=parse_daemon,
        default=[],
        metavar="LABEL=CMD",
        help=(
            "another daemon to measure side by side with ours, e.g. "
            "rust='/path/vhost-device-X --socket-path {sock}' (repeatable; "
            f"label {OURS!r} replaces our own command; every row shows its ratio to ours)"
        ),
    )


def chosen_daemons(given: Sequence[DaemonCommand], ours: str) -> list[DaemonCommand]:
    """Ours first (from `ours`, unless `given` has one labelled `OURS`), then the others
    in the order given; labels must differ."""
    own = [d for d in given if d.label == OURS]
    chosen = [own[-1] if own else DaemonCommand(OURS, ours)]
    for daemon in given:
        if daemon.label == OURS:
            continue
        if any(d.label == daemon.label for d in chosen):
            raise ValueError(f"--daemon label {daemon.label!r} given twice")
        chosen.append(daemon)
    return chosen


def listening(path: str | os.PathLike[str]) -> bool:
    """Whether a Unix socket listens at `path`, read from /proc/net/unix without
    connecting: a probe connection would be taken as the VMM's by a daemon that serves
    one connection and exits (upstream's console does)."""
    wanted = {os.fspath(path), os.path.abspath(path)}
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and int(fields[3], 16) & _SO_ACCEPTCON and fields[7] in wanted:
                return True
    return False


_SO_ACCEPTCON = 0x10000  # the kernel's flag for a listening socket in /proc/net/unix


def find_sockets(
    base: str | os.PathLike[str],
    count: int = 1,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 20.0,
) -> list[str]:
    """The sockets a daemon given `base` listens on, once all listen: `base` itself or
    `base` + "0" for one (upstream appends 0 to --socket-path even for a single
    socket, our sound and scmi do not), `base` + "0" .. for several."""
    base = os.fspath(base)
    deadline = time.monotonic() + timeout
    while True:
        if count == 1:
            for candidate in (base, f"{base}0"):
                if listening(candidate):
                    return [candidate]
        else:
            paths = [f"{base}{i}" for i in range(count)]
            if all(listening(p) for p in paths):
                return paths
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the daemon exited {process.returncode} before listening on {base}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {base} (or {base}0) after {timeout:g} s")
        time.sleep(0.02)


@dataclass
class Started:
    """A daemon of a side-by-side run: its label, process and discovered sockets."""

    label: str
    process: subprocess.Popen[bytes]
    sockets: list[str]

    @property
    def socket(self) -> str:
        return self.sockets[0]


@contextmanager
def started(
    daemon: DaemonCommand,
    base: str | os.PathLike[str],
    *,
    count: int = 1,
    fields: Mapping[str, object] | None = None,
    extra: Sequence[str] = (),
    **popen: Any,
) -> Iterator[Started]:
    """Run `daemon` with `{sock}` = `base` (and `fields`), find its sockets, SIGTERM it
    at the end. `extra` is appended to our own daemon's argv only (e.g. a log level)."""
    argv = daemon.argv(sock=os.fspath(base), **(fields or {}))
    if daemon.label == OURS:
        argv += extra
    with daemon_process(argv, **popen) as process:
        yield Started(daemon.label, process, find_sockets(base, count, process))


def each_daemon(
    daemons: Sequence[DaemonCommand],
    base: str | os.PathLike[str],
    stack: ExitStack,
    **kwargs: Any,
) -> list[Started]:
    """Start every daemon at once, each with its own `{sock}` (`base` + ".label"), kept
    running by `stack`, so that measurements can alternate between them."""
    base = os.fspath(base)
    return [stack.enter_context(started(d, f"{base}.{_safe(d.label)}", **kwargs)) for d in daemons]


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


class Ratios:
    """The ratio column of a side-by-side table: each row's value over ours for the
    same case, ours being measured first in every round."""

    def __init__(self, baseline: str = OURS) -> None:
        self.baseline = baseline
        self._values: dict[Hashable, float] = {}

    def __call__(self, case: Hashable, label: str, value: float | None) -> str:
        if label == self.baseline:
            if value is not None:
                self._values[case] = value
            return "1.00×" if value else "—"
        base = self._values.get(case)
        if value is None or not base:
            return "—"
        return f"{value / base:.2f}×"


def rounds(cases: Iterable[C], daemons: Sequence[D]) -> Iterator[tuple[C, D]]:
    """Every case against every daemon, the daemons alternating within each case (ours
    first), so that a change in the machine's load falls on all of them alike."""
    for case in cases:
        for daemon in daemons:
            yield case, daemon


# Placement: where the bench and the daemon run, taken per measurement.


@dataclass(frozen=True)
class Placement:
    """The CPU the bench (the guest driver) runs on and the one the daemon runs on;
    `None` leaves both where the scheduler puts them."""

    name: str
    bench_cpu: int | None
    daemon_cpu: int | None

    def apply(self, daemon_pid: int) -> None:
        """Pin the bench (every thread of this process) and every thread of the daemon
        (`os.sched_setaffinity` is per thread: a worker started before the call keeps
        its own mask otherwise). Unpinned gives both every CPU this process may use."""
        allowed = _allowed_cpus()
        _pin(os.getpid(), allowed if self.bench_cpu is None else {self.bench_cpu})
        _pin(daemon_pid, allowed if self.daemon_cpu is None else {self.daemon_cpu})


def _allowed_cpus() -> set[int]:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = os.sched_getaffinity(0)
    return _ALLOWED


_ALLOWED: set[int] | None = None  # the CPUs the bench was started with


def _pin(pid: int, cpus: set[int]) -> None:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise RuntimeError(f"process {pid} has exited: nothing to pin") from None
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), cpus)
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


#: `--placement` choices: each measurement with the daemon on the bench's CPU and on
#: another one (the default), one of them, or neither pinned (the figures before).
PLACEMENTS = ("both", "one", "two", "unpinned")


def placements(choice: str = "both") -> list[Placement]:
    """The placements `choice` names, from the CPUs this process may use: "one CPU"
    (bench and daemon on the first), "two CPUs" (the daemon on the last; left out if
    there is only one), or "unpinned"."""
    cpus = sorted(_allowed_cpus())
    one = Placement("one CPU", cpus[0], cpus[0])
    two = [Placement("two CPUs", cpus[0], cpus[-1])] if len(cpus) > 1 else []
    named = {
        "both": [one, *two],
        "one": [one],
        "two": two,
        "unpinned": [Placement("unpinned", None, None)],
    }
    if choice not in named:
        raise ValueError(f"unknown placement {choice!r} (one of {', '.join(PLACEMENTS)})")
    chosen = named[choice]
    if not chosen:
        raise ValueError(f"--placement {choice}: this process may use only CPU {cpus[0]}")
    return chosen


def add_placement_arg(parser: argparse.ArgumentParser, default: str = "both") -> None:
    """`--placement`, the one spelling of it in every depth-1 bench."""
    parser.add_argument(
        "--placement",
        choices=PLACEMENTS,
        default=default,
        help=(
            "where the daemon runs for each measurement: on the bench's CPU (one), on "
            f"another CPU (two), both, each row saying which, or unpinned (default {default})"
        ),
    )


def placed_rounds(
    cases: Iterable[C],
    daemons: Sequence[D],
    pid: Callable[[D], int],
    choice: str = "both",
    slices: int = 1,
) -> Iterator[tuple[Placement, C, D]]:
    """`rounds` once per placement, the bench and the daemon (`pid(daemon)`) pinned as
    it says before each measurement; the daemons keep running across placements.
    With `slices` > 1 each case is measured in that many slices per daemon, the order
    of the daemons reversed every other slice (ours, rust, rust, ours, …): the caller
    adds a case's slices up (`seconds / slices` each), so that a change in the
    machine's load during a case falls on every daemon alike."""
    if slices < 1:
        raise ValueError(f"slices must be at least 1, not {slices}")
    cases = list(cases)
    for placement in placements(choice):
        for case in cases:
            for n in range(slices):
                for daemon in daemons if n % 2 == 0 else daemons[::-1]:
                    placement.apply(pid(daemon))
                    yield placement, case, daemon


def add_slices_arg(parser: argparse.ArgumentParser, default: int = 6) -> None:
    """`--slices`, for a bench that adds up `placed_rounds`' slices."""
    parser.add_argument(
        "--slices",
        type=int,
        default=default,
        help=(
            "measure each case in this many slices per daemon, the daemons' order "
            f"reversed every other slice, and add them up (default {default})"
        ),
    )


def wakeup_floor(placement: Placement, count: int = 20_000) -> tuple[float, float]:
    """p50 and p99 (µs) of a bare eventfd ping-pong between this process and a child
    placed like the daemon: what two wake-ups cost on this machine, the floor of one
    request at depth 1 with that placement."""
    ping = os.eventfd(0, os.EFD_CLOEXEC)
    pong = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            try:
                for _ in range(count):
                    os.eventfd_read(ping)
                    os.eventfd_write(pong, 1)
            finally:
                os._exit(0)
        placement.apply(child)
        samples = []
        for _ in range(count):
            t0 = time.perf_counter()
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)
            samples.append(time.perf_counter() - t0)
        os.waitpid(child, 0)
    finally:
        os.close(ping)
        os.close(pong)
    p50, p99 = percentiles(samples)
    return p50 * 1e6, p99 * 1e6


def print_floors(choice: str = "both") -> None:
    """One line per placement: the machine's floor a depth-1 row is to be read against."""
    for placement in placements(choice):
        p50, p99 = wakeup_floor(placement)
        print(
            f"{placement.name}: bare eventfd ping-pong between two processes (the floor of "
            f"one request at depth 1): p50 {p50:.1f} µs, p99 {p99:.1f} µs"
        )


def timed_rounds(
    post: Callable[[], None], queue: FrontendQueue, depth: int, seconds: float
) -> tuple[int, list[float]]:
    """Rounds of `post` (which makes `depth` requests available) and reaping them, for
    `seconds`; a sample is one round's time (an upper bound of each of its requests'
    latency). Returns the requests completed and the samples."""
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        post()
        reap_used(queue, depth)
        samples.append(time.perf_counter() - t0)
    return depth * len(samples), samples


class RequestRun(Protocol):
    """One timed run of a request/response bench: `depth` requests in flight for
    `seconds`; returns how many completed and the latency samples (seconds)."""

    def __call__(
        self, frontend: Frontend, queue: FrontendQueue, depth: int, seconds: float
    ) -> tuple[int, list[float]]: ...


def print_request_table(
    queues: Sequence[tuple[Started, Frontend, FrontendQueue]],
    depths: Iterable[int],
    run: RequestRun,
    seconds: float,
    placement: str = "both",
    slices: int = 1,
) -> None:
    """The side-by-side table of a device whose driver waits on each request (i2c,
    scmi): requests/s, ratio, p50/p99 and daemon CPU per request at each depth and
    placement, every daemon in turn (in `slices`, added up), then the machine's floor
    and each daemon's idle line."""
    totals: dict[tuple[str, int, str], tuple[int, list[float], float]] = {}
    rows = placed_rounds(depths, queues, lambda q: q[0].process.pid, placement, slices)
    for where, depth, (daemon, frontend, queue) in rows:
        cpu0 = cpu_seconds(daemon.process.pid)
        count, samples = run(frontend, queue, depth, seconds / slices)
        cpu = cpu_seconds(daemon.process.pid) - cpu0
        total, all_samples, all_cpu = totals.get((where.name, depth, daemon.label), (0, [], 0.0))
        totals[where.name, depth, daemon.label] = (
            total + count,
            all_samples + samples,
            all_cpu + cpu,
        )
    ratio = Ratios()
    print(
        "| placement | daemon | in flight | requests/s | × ours | p50 µs | p99 µs "
        "| daemon CPU µs/request |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (name, depth, label), (count, samples, cpu) in totals.items():
        p50, p99 = percentiles(samples)
        rate = count / sum(samples)
        print(
            f"| {name} | {label} | {depth} | {rate:,.0f} | {ratio((name, depth), label, rate)} "
            f"| {p50 * 1e6:.0f} | {p99 * 1e6:.0f} | {cpu / count * 1e6:.1f} |"
        )
    print()
    print_floors(placement)
    for daemon, _, _ in queues:
        print(f"{daemon.label}: {idle_report(daemon.process.pid)}")


def request_bench_main(
    description: str, ours: str, socket_name: str, num_queues: int, run: RequestRun
) -> int:
    """The whole `main` of a request/response bench (i2c, scmi): its flags, every
    daemon started, each device's first queue driven by `run` at 1 and 64 requests in
    flight, and `print_request_table`'s rows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=3.0, help="per depth")
    add_daemon_arg(parser)
    add_placement_arg(parser)
    add_slices_arg(parser)
    args = parser.parse_args()
    daemons = chosen_daemons(args.daemon, ours)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        running = each_daemon(
            daemons, Path(tmp) / socket_name, stack, extra=["--log-level", "warning"]
        )
        queues = []
        for daemon in running:
            frontend = stack.enter_context(Frontend.connect(daemon.socket))
            queue = frontend.start_device(num_queues, 1024)[0]
            queues.append((daemon, frontend, queue))
        print_request_table(queues, (1, 64), run, args.seconds, args.placement, args.slices)
    return 0
