"""The whole daemon through PipeWire, driven by the core's frontend: what the guest
plays reaches the sink, what the microphone hears reaches the guest, and the switches
turn both into silence (a private headless PipeWire, see pipewire_harness.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipewire_harness import PcmFormat, PipeWireSession, analyse, channel, tone

from vhost_device_sound.backends.pipewire import PipeWireBackend
from vhost_device_sound.device import SoundDevice
from vhost_device_sound.protocol import Direction, Status
from vhost_device_sound.switches import Switches
from vhost_device_sound.testing import SoundDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import running_daemon

PERIOD = 1920  # 10 ms of 48 kHz stereo S16
S16 = PcmFormat("s16", 48000, 2)
MONITOR = PcmFormat("f32", 48000, 2)


@pytest.fixture
def switches() -> Switches:
    return Switches(frozenset(Direction))


@pytest.fixture
def driver(pipewire: PipeWireSession, switches: Switches, tmp_path: Path) -> Iterator[SoundDriver]:
    with (
        running_daemon(lambda: SoundDevice(PipeWireBackend(), switches), tmp_path / "snd.sock"),
        Frontend.connect(tmp_path / "snd.sock") as frontend,
    ):
        yield SoundDriver(frontend)


def play(driver: SoundDriver, pcm: bytes, in_flight: int = 8) -> None:
    """Play `pcm` period by period, keeping `in_flight` periods with the device."""
    periods = [pcm[i : i + PERIOD] for i in range(0, len(pcm), PERIOD)]
    assert {c.status for c in driver.play(periods, in_flight)} == {Status.OK}


def capture(driver: SoundDriver, periods: int, in_flight: int = 8) -> bytes:
    done = driver.capture(periods, PERIOD, in_flight)
    assert {c.status for c in done} == {Status.OK}
    return b"".join(c.data for c in done)


def test_played_tone_reaches_the_sink(pipewire: PipeWireSession, driver: SoundDriver) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
    with pipewire.recording(MONITOR) as rec:
        play(driver, tone(1000, 1.0, S16))
    report = analyse(channel(rec.data, MONITOR), 1000, MONITOR.rate)
    assert report.purity > 0.95, report
    assert 0.8 <= report.active_seconds <= 1.2, report


def test_disabled_output_reaches_the_sink_as_silence_in_real_time(
    pipewire: PipeWireSession, driver: SoundDriver, switches: Switches
) -> None:
    switches.set(Direction.OUTPUT, False)
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
    t0 = time.monotonic()
    with pipewire.recording(MONITOR) as rec:
        play(driver, tone(1000, 1.0, S16))
    assert 0.9 <= time.monotonic() - t0 <= 1.4  # the guest still played 1 s in real time
    report = analyse(channel(rec.data, MONITOR), 1000, MONITOR.rate)
    assert report.active_seconds == 0, report


def test_capture_gets_the_microphone_only_while_enabled(
    pipewire: PipeWireSession, driver: SoundDriver, switches: Switches
) -> None:
    driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
    feeder = threading.Thread(target=pipewire.play, args=(tone(500, 3.0, S16), S16))
    feeder.start()
    try:
        time.sleep(0.3)
        heard = capture(driver, 80)  # 0.8 s, input on
        switches.set(Direction.INPUT, False)
        time.sleep(0.05)
        muted = capture(driver, 80)  # 0.8 s, input off, the microphone still playing
    finally:
        feeder.join()
    report = analyse(channel(heard, S16), 500, S16.rate)
    assert report.purity > 0.9 and report.active_seconds >= 0.5, report
    assert muted == bytes(len(muted)), "the guest got host audio with its input off"
