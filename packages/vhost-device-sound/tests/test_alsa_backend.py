"""AlsaBackend against real libasound, with no sound card: the PCMs are ALSA `file`
plugins on a `null` slave, defined in a config file of the test's own.

ALSA_CONFIG_PATH names that file alone (libasound rereads its configuration when the
path changes, so each test gets its own PCMs and the host's ~/.asoundrc plays no part).
The `file` plugin copies every frame played into a raw file, flushed when the PCM is
stopped, and with `infile` it captures from a raw file. `null` has no clock: the backend
paces such a PCM to real time itself, which the pacing test checks.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import alsaaudio  # type: ignore[import-not-found]
import pytest

from vhost_device_sound._pcmring import PcmRing, Switch, scale_samples
from vhost_device_sound.backends import StreamSetup, backend_class
from vhost_device_sound.backends.alsa import AlsaBackend
from vhost_device_sound.params import BASE_RATES, PcmParams
from vhost_device_sound.protocol import Direction, Format, Rate
from vhost_user_core import BackendError

PERIOD_FRAMES = 256


@dataclass
class Pcms:
    """The PCM names defined for one test and the files behind them."""

    play: str
    capture: str
    stereo_only: str
    out: Path
    infile: Path
    capture_copy: Path


@pytest.fixture
def pcms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pcms:
    out, infile, copy = tmp_path / "out.raw", tmp_path / "in.raw", tmp_path / "copy.raw"
    infile.write_bytes(os.urandom(19200))  # 0.1 s of S16 stereo at 48 kHz
    conf = tmp_path / "asound.conf"
    conf.write_text(
        f"""
pcm.vds_play {{
    type file
    slave.pcm {{ type null }}
    file "{out}"
    format raw
}}
pcm.vds_capture {{
    type file
    slave.pcm {{ type null }}
    file "{copy}"
    infile "{infile}"
    format raw
}}
# Exactly two channels: anything else is refused.
pcm.vds_stereo {{
    type multi
    slaves.a.pcm {{ type null }}
    slaves.a.channels 2
    bindings.0 {{ slave a channel 0 }}
    bindings.1 {{ slave a channel 1 }}
}}
"""
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    return Pcms("vds_play", "vds_capture", "vds_stereo", out, infile, copy)


@pytest.fixture
def make_backend() -> Iterator[Callable[[str], AlsaBackend]]:
    backends: list[AlsaBackend] = []

    def make(device: str) -> AlsaBackend:
        backends.append(AlsaBackend(device=device))
        return backends[-1]

    yield make
    for backend in backends:
        backend.close()


def params(fmt: Format = Format.S16, channels: int = 2, rate: Rate = Rate.R48000) -> PcmParams:
    frame = {Format.U8: 1, Format.S16: 2}.get(fmt, 4) * channels
    return PcmParams(fmt, rate, channels, 4 * PERIOD_FRAMES * frame, PERIOD_FRAMES * frame)


def setup(
    direction: Direction, on: bool, p: PcmParams | None = None, capacity: int = 1 << 20
) -> StreamSetup:
    p = p or params()
    ring = PcmRing(capacity, Switch(on))
    return StreamSetup(int(direction), direction, p, p.positions, ring)


def tone(fmt: Format, frames: int, channels: int = 2) -> bytes:
    """A 440 Hz sine in `fmt`, the same on every channel."""
    code, scale, offset = {
        Format.U8: ("B", 100, 128),
        Format.S16: ("<h", 20000, 0),
        Format.S24: ("<i", 4_000_000, 0),
        Format.S32: ("<i", 1_000_000_000, 0),
        Format.FLOAT: ("<f", 0.5, 0),
    }[fmt]
    out = bytearray()
    for i in range(frames):
        value = math.sin(2 * math.pi * 440 * i / 48000) * scale + offset
        sample = struct.pack(code, value if fmt is Format.FLOAT else round(value))
        out += sample * channels
    return bytes(out)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def alsa_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("alsa-")]


def open_fds_under(path: Path) -> int:
    """How many of this process's descriptors point into `path` (PCMs hold their files)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(path))
        except OSError:
            pass
    return count


def play(backend: AlsaBackend, s: StreamSetup, after_empty: float = 0.05) -> None:
    """Prepare, start, let the ring drain (or not, if output is off), stop, release."""
    backend.prepare(s)
    backend.start(s.stream_id)
    if s.ring.switch.enabled:
        wait_until(lambda: s.ring.fill == 0)
    time.sleep(after_empty)
    backend.stop(s.stream_id)
    backend.release(s.stream_id)


# -- playback ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [Format.U8, Format.S16, Format.S24, Format.S32, Format.FLOAT])
def test_playback_copies_the_ring_then_plays_silence(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend], fmt: Format
) -> None:
    backend = make_backend(pcms.play)
    s = setup(Direction.OUTPUT, True, params(fmt))
    pattern = tone(fmt, 1000)  # not a whole number of periods: the last one is padded
    assert s.ring.write(pattern) == len(pattern)
    play(backend, s)
    out = pcms.out.read_bytes()
    silence = b"\x80" if fmt is Format.U8 else b"\x00"
    assert out[: len(pattern)] == pattern
    assert len(out) >= 1024 * s.params.frame_bytes  # the padded period at least
    assert out[len(pattern) :] == silence * (len(out) - len(pattern))


def test_disabled_output_lets_nothing_of_the_ring_through(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.play)
    s = setup(Direction.OUTPUT, False)
    pattern = tone(Format.S16, 1000)
    s.ring.write(pattern)
    backend.set_active(Direction.OUTPUT, False)
    play(backend, s, after_empty=0.1)
    out = pcms.out.read_bytes()
    assert out, "a disabled output still feeds the PCM (silence)"
    assert out.count(0) == len(out)
    assert s.ring.fill == len(pattern), "the backend took nothing from the ring"


def test_volume_scales_what_is_played(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.play)
    backend.set_volume(Direction.OUTPUT, 0.5, False)
    s = setup(Direction.OUTPUT, True)
    pattern = tone(Format.S16, 1000)
    s.ring.write(pattern)
    play(backend, s)
    expected = bytearray(pattern)
    scale_samples(expected, Format.S16, 0.5)
    out = pcms.out.read_bytes()
    assert out[: len(pattern)] == expected
    assert out[: len(pattern)] != pattern


def test_mute_plays_silence_and_still_consumes(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.play)
    backend.set_volume(Direction.OUTPUT, 1.0, True)
    s = setup(Direction.OUTPUT, True)
    s.ring.write(tone(Format.S16, 1000))
    play(backend, s)  # returns once the ring is empty: the guest's stream moves on
    out = pcms.out.read_bytes()
    assert out and out.count(0) == len(out)


def test_clockless_pcm_is_paced_to_real_time(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    """`null` takes any amount at once; the backend must still play in real time (plus
    one ALSA buffer of lead), not fill the disk at memory speed."""
    backend = make_backend(pcms.play)
    p = params(Format.U8, channels=1, rate=Rate.R8000)
    s = setup(Direction.OUTPUT, True, p)
    backend.prepare(s)
    started = time.monotonic()
    backend.start(s.stream_id)
    time.sleep(0.4)
    backend.stop(s.stream_id)
    elapsed = time.monotonic() - started
    backend.release(s.stream_id)
    played = len(pcms.out.read_bytes())
    real_time = elapsed * p.bytes_per_second
    assert played <= real_time + p.buffer_bytes + 2 * p.period_bytes
    assert played >= 0.25 * 0.4 * p.bytes_per_second


# -- capture -------------------------------------------------------------------------------


def test_capture_delivers_the_input_while_enabled(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.capture)
    s = setup(Direction.INPUT, True)
    expected = pcms.infile.read_bytes()
    backend.prepare(s)
    backend.set_active(Direction.INPUT, True)
    backend.start(s.stream_id)
    wait_until(lambda: s.ring.fill >= len(expected))
    got = bytearray(len(expected))
    assert s.ring.read_into(got) == len(expected)
    assert got == expected
    backend.stop(s.stream_id)
    assert open_fds_under(pcms.infile) == 0, "a stopped stream holds no capture PCM"
    backend.release(s.stream_id)


def test_disabled_capture_reads_nothing_and_closes_the_pcm(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.capture)
    s = setup(Direction.INPUT, False)
    expected = pcms.infile.read_bytes()
    backend.prepare(s)
    assert open_fds_under(pcms.infile) == 0, "no capture PCM open while input is off"
    backend.set_active(Direction.INPUT, False)
    backend.start(s.stream_id)
    time.sleep(0.2)
    assert s.ring.fill == 0
    assert open_fds_under(pcms.infile) == 0

    # Enabled: the PCM opens and the input arrives from its start.
    s.ring.switch.enabled = True
    backend.set_active(Direction.INPUT, True)
    wait_until(lambda: s.ring.fill >= len(expected))
    assert open_fds_under(pcms.infile) == 1
    got = bytearray(len(expected))
    s.ring.read_into(got)
    assert got == expected

    # Disabled again: not one more byte, and the PCM closes.
    s.ring.switch.enabled = False
    backend.set_active(Direction.INPUT, False)
    frozen = s.ring.write_pos
    wait_until(lambda: open_fds_under(pcms.infile) == 0)
    time.sleep(0.1)
    assert s.ring.write_pos == frozen
    backend.release(s.stream_id)


# -- lifecycle and errors ------------------------------------------------------------------


def test_reprepare_release_and_close_leave_no_thread_or_pcm(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend], tmp_path: Path
) -> None:
    before = alsa_threads()
    out, cap = setup(Direction.OUTPUT, True), setup(Direction.INPUT, True)
    fds = len(os.listdir("/proc/self/fd"))
    backend = make_backend(pcms.play)
    backend.prepare(out)
    backend.start(out.stream_id)
    assert len(alsa_threads()) == len(before) + 1
    backend.prepare(out)  # while running: the old thread and PCM go first
    assert alsa_threads() == before
    assert open_fds_under(pcms.out) == 1
    backend.start(out.stream_id)
    started = time.monotonic()
    backend.stop(out.stream_id)
    assert time.monotonic() - started < 1.0
    backend.start(out.stream_id)  # restart after stop
    backend.release(out.stream_id)
    assert alsa_threads() == before
    assert open_fds_under(tmp_path) == 0

    capture = AlsaBackend(device=pcms.capture)
    capture.prepare(cap)
    capture.start(cap.stream_id)
    capture.prepare(cap)
    capture.start(cap.stream_id)
    capture.close()
    capture.close()  # idempotent
    assert alsa_threads() == before
    assert open_fds_under(tmp_path) == 0
    assert len(os.listdir("/proc/self/fd")) == fds, "no PCM or eventfd left open"


def test_unknown_pcm_name_is_a_backend_error(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend("vds_no_such_pcm")
    with pytest.raises(BackendError, match="vds_no_such_pcm"):
        backend.prepare(setup(Direction.OUTPUT, True))
    with pytest.raises(BackendError, match="not prepared"):
        backend.start(0)


def test_refused_parameters_are_a_backend_error(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    backend = make_backend(pcms.stereo_only)
    backend.prepare(setup(Direction.OUTPUT, True, params(channels=2)))
    with pytest.raises(BackendError, match="refuses playback with 1 channels"):
        backend.prepare(setup(Direction.OUTPUT, True, params(channels=1)))
    assert alsa_threads() == []


def test_backend_is_registered_and_offers_the_base_capabilities() -> None:
    from vhost_device_sound.params import BASE_CAPABILITIES

    assert backend_class("alsa") is AlsaBackend
    assert AlsaBackend().capabilities(Direction.INPUT) == BASE_CAPABILITIES


class FailingPcm:
    """A real PCM whose writes fail as if the device had been unplugged."""

    def __init__(self, pcm: object) -> None:
        self._pcm = pcm

    def __getattr__(self, name: str) -> object:
        return getattr(self._pcm, name)

    def write(self, data: object) -> int:
        raise alsaaudio.ALSAAudioError("No such device [vds_play]")


def test_a_failing_thread_logs_once_and_start_reports_it(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend], caplog: pytest.LogCaptureFixture
) -> None:
    s = setup(Direction.OUTPUT, True)
    fds = len(os.listdir("/proc/self/fd"))
    backend = make_backend(pcms.play)
    backend.prepare(s)
    stream = backend._streams[s.stream_id]
    stream.pcm = FailingPcm(stream.pcm)  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="vhost_device_sound.backends.alsa"):
        backend.start(s.stream_id)
        wait_until(lambda: not alsa_threads())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No such device" in errors[0].getMessage()
    backend.stop(s.stream_id)
    with pytest.raises(BackendError, match="prepared again"):
        backend.start(s.stream_id)
    backend.prepare(s)  # a fresh PCM works again
    backend.start(s.stream_id)
    backend.release(s.stream_id)
    assert len(os.listdir("/proc/self/fd")) == fds


def test_rates_offered_are_those_the_pcm_plays(
    pcms: Pcms, make_backend: Callable[[str], AlsaBackend]
) -> None:
    """A `null` slave plays at any rate: every rate of the spec is offered, both ways; a
    PCM that cannot be opened leaves the baseline (PREPARE then says why)."""
    backend = make_backend(pcms.play)
    for direction in Direction:
        caps = backend.capabilities(direction)
        assert caps.rates == frozenset(Rate)
        assert (caps.channels_min, caps.channels_max) == (1, 6)
    assert make_backend("vds_nowhere").capabilities(Direction.OUTPUT).rates == BASE_RATES
