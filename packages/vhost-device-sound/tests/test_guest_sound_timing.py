"""Real time through the real driver (virtio_snd, kernel 6.12, QEMU 10 vhost-user-snd-pci
under TCG), for every backend: one boot per backend plays and records a matrix of
period sizes, buffer sizes, start thresholds, rates and channel counts (issue 24), and
each run must take its audio's duration within TOLERANCE; a playback's DRAIN must end
once its last frame has been played.

snd-test plays and records whole periods, as aplay and arecord do (aplay pads its last
chunk to a period): Linux 6.12's virtio_snd hands the device a period only once it is
complete, so a partial last period never reaches any device, and DRAIN then ends only
by the kernel's timeout (1.1 buffer times after the last whole period came back, EIO).
That is the guest driver's limit, not the device's; the README says more.

On a loaded host the TCG guest itself falls behind now and then (an xrun, or a late
read), so a run that misses is run once more, in a second boot of only those runs; the
tolerance stays the same.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from guest_snd import GUEST_PATH, SndReport, guest_files, parse_reports
from pipewire_harness import PipeWireSession
from sound_daemon import running_daemon

from vhost_device_sound._playback import MAX_LEAD
from vhost_user_core.testing.qemu import Guest

pytestmark = pytest.mark.guest

#: How far from real time a run may end (the issue's ±50 ms over 2 s).
TOLERANCE = 0.05


@dataclass(frozen=True)
class Run:
    """One snd-test play or capture run: frames are whole periods."""

    cmd: str  # "play" or "capture"
    rate: int
    channels: int
    period: int  # frames
    periods: int
    frames: int
    #: Frames; 0 = snd-test's default (playback: the buffer; capture: explicit START).
    threshold: int = 0
    fmt: str = "s16"
    #: Play exactly `frames`, the last period partial, and drain as alsa-lib does.
    partial: bool = False

    @property
    def buffer(self) -> int:
        return self.period * self.periods

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    def command(self) -> str:
        args = [
            f"{GUEST_PATH} {self.cmd} --frames {self.frames} --rate {self.rate}",
            f"--channels {self.channels} --format {self.fmt}",
            f"--period-frames {self.period} --periods {self.periods}",
        ]
        if self.threshold:
            args.append(f"--start-threshold {self.threshold}")
        if self.cmd == "capture":
            args.append("--out /dev/null")
        if self.partial:
            args.append("--partial")
        return " ".join(args) + "; echo status=$?"

    def check(self, report: SndReport) -> str | None:
        """Why this run's report misses real time (None: it keeps it)."""
        if self.partial:
            return self._check_partial(report)
        if report.cmd != self.cmd or not report.ok or report.get("status") != "0":
            return f"failed: {report.fields}"
        settled = tuple(report.as_int(k) for k in ("rate", "channels", "period_frames"))
        if settled != (self.rate, self.channels, self.period):
            return f"the driver settled on {settled}"
        if report.as_int("buffer_frames") != self.buffer:
            return f"buffer of {report['buffer_frames']} frames"
        if report.as_int("xruns"):
            return f"{report['xruns']} xrun(s)"
        if report.as_int("frames") != self.frames:
            return f"{report['frames']} frames"
        elapsed = report.as_float("elapsed")
        if abs(elapsed - self.seconds) > TOLERANCE:
            return f"took {elapsed:.3f} s for {self.seconds:.3f} s of audio"
        if self.cmd == "play":
            # DRAIN waits for what was queued when it was called, and no longer.
            left = self.seconds - report.as_float("drain_at")
            if abs(report.as_float("drain") - left) > TOLERANCE:
                return f"drain took {report['drain']} s for {left:.3f} s left"
            # The delay ALSA reports is the frames the pointer has not passed, plus
            # only what of a completed buffer is still to be heard (a host cycle).
            if report.as_int("extra_delay") > MAX_LEAD * self.rate:
                return f"the device's latency added {report['extra_delay']} frames of delay"
        return None

    def _check_partial(self, report: SndReport) -> str | None:
        """The guest driver never sends a partial period, so DRAIN can only time out:
        1.1 buffer times after the last whole period came back, which must be on time."""
        if (report.get("error"), report.get("errno"), report.get("xruns")) != ("drain", "5", "0"):
            return f"not the driver's drain timeout: {report.fields}"
        whole = self.frames // self.period * self.period
        expected = whole / self.rate + 1.1 * self.buffer / self.rate
        elapsed = report.as_float("elapsed")
        if abs(elapsed - expected) > TOLERANCE:
            return f"drain timed out at {elapsed:.3f} s, not {expected:.3f} s"
        return None


def _whole(rate: int, period: int, seconds: float = 2.0) -> int:
    """At least `seconds` of audio, in whole periods."""
    return -(-int(seconds * rate) // period) * period


#: The runs of issue 24's table, and the ends of what the driver accepts (from 64-frame
#: periods to a period of half the buffer, queued whole before START), for any backend.
MATRIX: tuple[Run, ...] = (
    # Large periods, the start threshold a whole buffer (all queued before START).
    Run("play", 48000, 2, 23040, 2, _whole(48000, 23040), 46080),
    Run("play", 44100, 2, 22500, 2, _whole(44100, 22500), 45000),
    Run("capture", 48000, 2, 23040, 2, _whole(48000, 23040), 23040),
    Run("capture", 44100, 2, 22500, 2, _whole(44100, 22500), 22500),
    # Small periods.
    Run("play", 48000, 2, 512, 8, _whole(48000, 512), 4096),
    Run("capture", 48000, 2, 512, 8, _whole(48000, 512)),
    # The shortest period, started at the first frame. At 8 kHz: at 48 kHz its 21 ms
    # buffer leaves a TCG guest on a busy host too little slack (the kernel gives up
    # on a stream after 100 ms without a period, EIO).
    Run("play", 8000, 2, 64, 16, 16000, 1),
    # 96 kHz both ways.
    Run("play", 96000, 2, 4800, 4, 192000),
    Run("capture", 96000, 2, 4800, 4, 192000),
    # 8 kHz, one-second periods: 2 s never reach the threshold, so DRAIN starts it.
    Run("play", 8000, 1, 8000, 4, 16000, 32000),
    Run("play", 8000, 2, 8000, 4, 16000, 32000),
    # The longest period there is (half the buffer), and a start at the first frame.
    Run("play", 48000, 2, 48000, 2, 96000),
    Run("play", 48000, 2, 23040, 2, _whole(48000, 23040), 1),
)

#: What only a backend without host limits (null) offers: the spec's lowest rate, the
#: driver's highest, eight channels; and, once, the guest driver's limit (module doc).
NULL_ONLY: tuple[Run, ...] = (
    Run("play", 5512, 1, 1378, 4, 11024, fmt="u8"),
    Run("capture", 5512, 1, 1378, 4, 11024, fmt="u8"),
    Run("play", 192000, 2, 9600, 4, 384000),
    Run("capture", 192000, 2, 9600, 4, 384000),
    Run("play", 48000, 8, 1920, 4, 96000),
    # What an alsa-lib client writing exactly 2 s gets (issue 24's first row).
    Run("play", 48000, 2, 23040, 2, 96000, 46080, partial=True),
)


def _boot(
    guest: Guest, tmp_path: Path, runs: Sequence[Run], flags: Sequence[str], env: dict[str, str]
) -> tuple[list[SndReport], str]:
    """The runs' reports, and what the daemon logged above INFO."""
    tmp_path.mkdir()
    script = "\n".join(run.command() for run in runs)
    flags = ("--initial-streams", "output,input", *flags)
    with running_daemon(tmp_path, *flags, env=env) as daemon:
        result = guest.run(script, devices=daemon.devices(), extra_files=guest_files(), timeout=300)
    assert result.rc == 0, result.console_output
    reports = [r for r in parse_reports(result.script_output) if r.cmd in ("play", "capture")]
    assert len(reports) == len(runs), result.script_output
    logged = [line for line in daemon.stderr.splitlines() if " INFO " not in line]
    return reports, "\n".join(logged[-20:])


def keeps_real_time(
    guest: Guest,
    tmp_path: Path,
    runs: Sequence[Run],
    flags: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> None:
    """Boot once for `runs`; again for those that missed (once); assert they all keep
    real time the second time at the latest."""
    env = dict(os.environ if env is None else env)
    reports, logged = _boot(guest, tmp_path / "first", runs, flags, env)
    missed = {
        run: why for run, r in zip(runs, reports, strict=True) if (why := run.check(r)) is not None
    }
    if not missed:
        return
    # Shown in the run's summary even when the second boot passes.
    warnings.warn(f"missed real time once, running again: {missed}\n{logged}", stacklevel=2)
    again = list(missed)
    second, logged = _boot(guest, tmp_path / "again", again, flags, env)
    still = {
        run: why for run, r in zip(again, second, strict=True) if (why := run.check(r)) is not None
    }
    assert not still, f"missed real time twice: {still} (first time: {missed})\n{logged}"


def test_null_backend_keeps_real_time(guest: Guest, tmp_path: Path) -> None:
    keeps_real_time(guest, tmp_path, MATRIX + NULL_ONLY)


def test_pipewire_backend_keeps_real_time(
    guest: Guest, tmp_path: Path, pipewire_session: PipeWireSession
) -> None:
    keeps_real_time(guest, tmp_path, MATRIX, ("--backend", "pipewire"), pipewire_session.env)


def test_alsa_backend_keeps_real_time(guest: Guest, tmp_path: Path) -> None:
    """An ALSA PCM without a clock of its own (`null`): the backend's pacer holds it to
    real time, the device's deadlines keep the guest there."""
    conf = tmp_path / "asound.conf"
    conf.write_text("pcm.vds_null { type null }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf)}
    flags = ("--backend", "alsa", "--alsa-device", "vds_null")
    keeps_real_time(guest, tmp_path, MATRIX, flags, env)
