"""The pieces every device benchmark repeats, in one place so that their numbers are
measured and printed the same way: the daemon as a process, a driver's reaping of used
entries, p50/p99 of latency samples, and the closing idle-CPU and peak-RSS line."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from vhost_user_core.frontend import FrontendQueue
from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib


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
