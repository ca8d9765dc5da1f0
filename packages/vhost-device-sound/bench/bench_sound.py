"""Benchmark of vhost-device-sound through the core's Python frontend (run by hand).

Starts the real daemon as a process and plays the guest driver's part the way Linux
does: 48 kHz stereo S16 in 10 ms periods, keeping a buffer of periods queued, posting
the next period as soon as one comes back. Prints, per backend:

- the daemon's CPU time per second of audio (all its threads, from /proc);
- the pace: seconds of wall time per second of audio (1.00 is real time), and "dry":
  how long a device playing each period right after the one before it (or once it is
  posted, if that one is over) would have had nothing to play, given when the frontend
  posted each period. The frontend is a Python process on the same CPUs; it runs under
  SCHED_FIFO where allowed (its daemons do not), else it stalls now and then on a
  loaded machine and the pace measures that. A device that loses no time of its own
  loses at most the dry time;
- the latency the device reports in each buffer's status (what of that buffer is
  still to be heard when it comes back), p50 and p99;
- wake-ups: how many buffers come back together, and the jitter of the intervals
  between those wake-ups;
- with PipeWire, the round trip of a click: the guest plays it, PipeWire's sink
  monitor is looped into its microphone, and the daemon captures it back into the
  guest's rx buffers. Minus the guest's own buffering (the periods queued ahead of
  the click, and where in its capture period the click landed) that is the latency
  the host path adds: the daemon both ways, PipeWire's graph and the loopback.

    python3 xtask bench sound                 # null, and pipewire in a private session
    .venv/bin/python bench/bench_sound.py --backend null --seconds 20

The pipewire run starts its own headless PipeWire (the tests' harness: pipewire,
wireplumber and a null sink in a temporary directory), so it measures the daemon and
PipeWire's graph, not a desktop's; its data threads run realtime (module-rt), as a
desktop's do (the tests' sessions do not), or a loaded machine delays the graph's
cycles and the pace measures PipeWire.

`--daemon LABEL='CMD {sock} {backend}'` (repeatable) adds another implementation, e.g.
`--daemon rust='/path/vhost-device-sound-pw --socket {sock} --backend {backend}'`:
each backend's measurement alternates between the daemons in one run, and each row
shows its CPU per second of audio as a ratio to ours (lower is better here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_device_sound.testing import SoundDriver, tone
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.bench import (
    DaemonCommand,
    Ratios,
    add_daemon_arg,
    chosen_daemons,
    python_daemon,
    rounds,
    started,
)
from vhost_user_core.testing.procstat import cpu_seconds

RATE, CHANNELS, FRAME = 48000, 2, 4
PERIOD = RATE // 100 * FRAME  # 10 ms: 1920 bytes
BYTES_PER_SECOND = RATE * FRAME


@dataclass
class Result:
    daemon: str
    backend: str
    seconds: float
    periods: int
    wall: float
    cpu: float
    latencies_ms: list[float]
    stamps: list[float]
    dry: float

    def cpu_share(self) -> float:
        """The daemon's CPU per second of audio."""
        return self.cpu / (self.periods * PERIOD / BYTES_PER_SECOND)

    def row(self, ratio: Ratios) -> str:
        lat = sorted(self.latencies_ms)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        wakeups = wakeup_times(self.stamps)
        per_wakeup = len(self.stamps) / len(wakeups)
        intervals = [(b - a) * 1000 for a, b in zip(wakeups, wakeups[1:], strict=False)]
        audio = self.periods * PERIOD / BYTES_PER_SECOND
        times = ratio(self.backend, self.daemon, self.cpu_share())
        return (
            f"| {self.daemon} | {self.backend:<8} | {audio:>6.1f} s "
            f"| {100 * self.cpu / audio:>6.2f} % | {times} "
            f"| {self.wall / audio:>6.4f} | {1000 * self.dry:>5.0f} "
            f"| {statistics.median(lat):>6.1f} | {p99:>6.1f} "
            f"| {per_wakeup:>4.2f} | {statistics.median(intervals):>6.2f} "
            f"| {statistics.pstdev(intervals):>5.2f} |"
        )


def wakeup_times(stamps: list[float]) -> list[float]:
    """Completion times with those less than 2 ms apart merged: one per device wake-up."""
    merged = [stamps[0]]
    for t in stamps[1:]:
        if t - merged[-1] >= 0.002:
            merged.append(t)
    return merged


def dry_time(start: float, posts: list[float], seconds: float) -> float:
    """How long a device playing each buffer (`seconds` long) right after the one before
    it, or as soon as it is posted if that one is over, waits for posts in all."""
    end = start
    for at in posts:
        end = max(end, at) + seconds
    return end - start - len(posts) * seconds


def play(
    driver: SoundDriver, seconds: float, queued: int
) -> tuple[int, float, list[float], list[float], float]:
    """Keep `queued` periods in flight for `seconds`; returns (periods played, wall
    time, reported latencies in ms, completion times in the steady state, the time
    the frontend kept a continuous device dry)."""
    pcm = tone(440, 1.0)
    count = int(seconds * 100)
    periods = [pcm[i % 100 * PERIOD : (i % 100 + 1) * PERIOD] for i in range(count)]
    posts: list[float] = []

    def post(i: int) -> None:
        posts.append(time.monotonic())
        driver.post_playback(periods[i], publish=False)

    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * queued)
    t0 = time.monotonic()
    done = driver.stream(driver.tx, count, queued, post)
    wall = time.monotonic() - t0
    latencies = [c.latency / BYTES_PER_SECOND * 1000 for c in done]
    stamps = [c.at for c in done[queued:]]  # the first fill the ring
    dry = dry_time(t0, posts, PERIOD / BYTES_PER_SECOND)
    return len(done), wall, latencies, stamps, dry


@contextmanager
def environment(backend: str) -> Iterator[dict[str, str]]:
    """The daemon's environment: for pipewire, a private PipeWire session's."""
    if backend != "pipewire":
        yield dict(os.environ)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pipewire_harness import PipeWireSession

    with (
        tempfile.TemporaryDirectory() as tmp,
        PipeWireSession(Path(tmp), realtime=True) as session,
    ):
        yield session.env


def realtime_frontend() -> str:
    """Run this process (the frontend, the guest driver's part) under SCHED_FIFO, as a
    guest kernel's driver answers at interrupt priority; the daemons it starts are not
    (SCHED_RESET_ON_FORK), so they compete as they would on a host. Without that, on a
    loaded machine the frontend itself stalls for up to 200 ms and the pace measures
    it, not the device. Returns the policy it runs under."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(10))
    except (OSError, AttributeError):
        return "SCHED_OTHER (no permission for SCHED_FIFO)"
    return "SCHED_FIFO"


OURS_COMMAND = python_daemon("vhost_device_sound.main", "--socket {sock} --backend {backend}")


def measure(
    command: DaemonCommand, backend: str, seconds: float, queued: int, env: dict[str, str]
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "snd.sock"
        with started(
            command,
            sock,
            fields={"backend": backend},
            extra=["--log-level", "warning"],
            env=env,
        ) as daemon:
            with Frontend.connect(daemon.socket) as frontend:
                driver = SoundDriver(frontend)
                cpu0 = cpu_seconds(daemon.process.pid)
                periods, wall, latencies, stamps, dry = play(driver, seconds, queued)
                cpu = cpu_seconds(daemon.process.pid) - cpu0
    return Result(command.label, backend, seconds, periods, wall, cpu, latencies, stamps, dry)


CLICK_EVERY = 50  # periods: a click every 0.5 s
CLICK = 30000  # S16 amplitude of the click's first frame; everything else is silence


def round_trip(driver: SoundDriver, seconds: float, queued: int) -> list[tuple[float, float]]:
    """Play clicks and capture them back; returns (round trip, guest buffering) per
    click, in seconds."""
    silence = bytes(PERIOD)
    click = CLICK.to_bytes(2, "little", signed=True) * CHANNELS + bytes(PERIOD - FRAME)
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * queued)
    driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * queued)
    periods = int(seconds * 100)
    posted: list[float] = []  # when each click was handed to the device
    heard: list[float] = []  # when each click's first frame was captured
    for _ in range(queued):
        driver.post_playback(silence, publish=False)
        driver.post_capture(PERIOD, publish=False)
    driver.tx.publish()
    driver.rx.publish()
    sent = queued
    while sent < periods:
        # One new period per period played, so `queued` stay in flight: that many are
        # ahead of a click when it is posted, less the one just played.
        for _ in driver.reap(driver.tx, 1, timeout=5):
            if sent % CLICK_EVERY == 0:
                driver.post_playback(click, publish=False)
                posted.append(time.monotonic())
            else:
                driver.post_playback(silence, publish=False)
            sent += 1
        driver.tx.publish()
        for capture in driver.ready(driver.rx):
            driver.post_capture(PERIOD)
            samples = memoryview(capture.data).cast("h")
            loud = next((i for i, v in enumerate(samples) if abs(v) > CLICK // 2), None)
            if loud is not None and (not heard or capture.at - heard[-1] > 0.25):
                frames_after = (len(samples) - loud) // CHANNELS
                heard.append(capture.at - frames_after / RATE)
    ahead = (queued - 1) * PERIOD / BYTES_PER_SECOND  # guest periods queued before a click
    # Each click with the first one heard after it, before the next was posted: a click
    # that never came back (the capture stream still starting) must not pair the rest
    # with their successors.
    gap = CLICK_EVERY * PERIOD / BYTES_PER_SECOND
    trips = []
    for p in posted:
        h = next((h for h in heard if p < h < p + gap), None)
        if h is not None:
            trips.append((h - p, ahead))
    return trips


def latency(command: DaemonCommand, seconds: float, queued: int) -> None:
    """The click round trip through a private PipeWire session with its sink looped
    into its microphone."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pipewire_harness import PipeWireSession

    with (
        tempfile.TemporaryDirectory() as tmp,
        PipeWireSession(Path(tmp), realtime=True) as session,
    ):
        session.loop_sink_into_source()
        with started(
            command,
            Path(tmp) / "snd.sock",
            fields={"backend": "pipewire"},
            extra=["--initial-streams", "output,input", "--log-level", "warning"],
            env=session.env,
        ) as daemon:
            with Frontend.connect(daemon.socket) as frontend:
                trips = round_trip(SoundDriver(frontend), seconds, queued)
    if not trips:
        print(f"{command.label}: round trip: no click came back")
        return
    rtt = statistics.median(t for t, _ in trips) * 1000
    added = statistics.median(t - ahead for t, ahead in trips) * 1000
    worst = max(t - ahead for t, ahead in trips) * 1000
    print(
        f"{command.label}: pipewire round trip (guest -> PipeWire -> guest, {len(trips)} clicks): "
        f"{rtt:.1f} ms median, of which the guest's own output queue is "
        f"{trips[0][1] * 1000:.0f} ms; the host path adds {added:.1f} ms median, "
        f"{worst:.1f} ms worst"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per backend")
    parser.add_argument("--queued", type=int, default=4, help="periods kept in flight")
    parser.add_argument(
        "--backend", action="append", choices=["null", "pipewire", "alsa"],
        help="backend(s) to measure (default: null and pipewire)",
    )  # fmt: skip
    add_daemon_arg(parser)
    opts = parser.parse_args()
    daemons = chosen_daemons(opts.daemon, OURS_COMMAND)
    policy = realtime_frontend()
    print(
        f"vhost-device-sound, 48 kHz stereo S16, 10 ms periods, {opts.queued} in flight, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, frontend {policy}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print()
    print(
        "| daemon | backend | audio | daemon CPU | × ours | pace | dry ms | latency p50 ms "
        "| p99 ms | periods per wake-up | wake-up interval ms | jitter ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    ratio = Ratios()
    for backend in opts.backend or ["null", "pipewire"]:
        with environment(backend) as env:
            for _, daemon in rounds([backend], daemons):
                result = measure(daemon, backend, opts.seconds, opts.queued, env)
                print(result.row(ratio), flush=True)  # as it comes: a later failure keeps it
    if "pipewire" in (opts.backend or ["null", "pipewire"]):
        print()
        for daemon in daemons:
            latency(daemon, opts.seconds, opts.queued)
    return 0


if __name__ == "__main__":
    sys.exit(main())
