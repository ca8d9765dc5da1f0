"""The ALSA backend against a real sound card: inside a hostkernel guest, `snd-aloop`
is a loopback cable (what is played on hw:Loopback,0,N is captured on hw:Loopback,1,N
and the other way round, in real time on the card's own clock). The daemon runs with
`--backend alsa --alsa-device hw:Loopback,0,0`; the core's Python frontend plays the
guest driver, and the test plays and records the cable's other end."""

from __future__ import annotations

import array
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import alsaaudio  # type: ignore[import-not-found]
import pytest
from sound_daemon import SoundDaemon, running_daemon

from vhost_device_sound.backends.alsa import AlsaBackend
from vhost_device_sound.protocol import Code, Direction, Rate, Status
from vhost_device_sound.testing import SoundDriver, tone
from vhost_user_core.frontend import Frontend

pytestmark = pytest.mark.hostkernel("snd-aloop pcm_substreams=1")

DAEMON_SIDE, TEST_SIDE = "hw:Loopback,0,0", "hw:Loopback,1,0"
RATE, CHANNELS = 48000, 2
PERIOD_FRAMES = 480  # 10 ms
PERIOD = PERIOD_FRAMES * CHANNELS * 2  # S16
FREQ = 1000  # 48 samples a cycle: a period holds exactly 10 cycles
AMPLITUDE = 12000
#: One period of the tone, which repeats seamlessly.
TONE = tone(FREQ, PERIOD_FRAMES / RATE, amplitude=AMPLITUDE)
#: A run of this many zero samples (1 ms) is silence, not a sine's zero crossing.
SILENT_RUN = 48


def open_pcm(kind: int) -> object:
    return alsaaudio.PCM(
        type=kind,
        mode=alsaaudio.PCM_NORMAL,
        device=TEST_SIDE,
        channels=CHANNELS,
        rate=RATE,
        format=alsaaudio.PCM_FORMAT_S16_LE,
        periodsize=PERIOD_FRAMES,
        periods=8,
    )


def left(data: bytes) -> list[int]:
    samples = array.array("h")
    samples.frombytes(data[: len(data) // 4 * 4])
    return list(samples[::2])


def stretches(samples: list[int]) -> list[list[int]]:
    """The stretches of sound between silences (SILENT_RUN zero samples in a row), a
    period or longer: a late buffer under emulation shows as a gap, not as noise."""
    found: list[list[int]] = []
    start = zeros = 0
    for i, value in enumerate(samples + [0] * SILENT_RUN):
        zeros = zeros + 1 if value == 0 else 0
        if zeros == SILENT_RUN:
            found.append(samples[start : i - SILENT_RUN + 1])
        if zeros >= SILENT_RUN:
            start = i + 1
    return [s for s in found if len(s) >= PERIOD_FRAMES]


def assert_is_the_tone(samples: list[int], seconds: float) -> None:
    """At least `seconds` of sound, all of it the tone: its frequency (rising zero
    crossings per second) and RMS level, within 1 % and 2 %."""
    sound = stretches(samples)
    total = sum(len(s) for s in sound)
    assert total >= seconds * RATE, f"{total / RATE:.2f} s of sound in {len(sound)} stretches"
    rising = sum(1 for s in sound for a, b in zip(s, s[1:], strict=False) if a < 0 <= b)
    freq = rising * RATE / total
    rms = math.sqrt(sum(v * v for s in sound for v in s) / total)
    assert abs(freq - FREQ) < 0.01 * FREQ, f"{freq:.1f} Hz in {len(sound)} stretches"
    assert abs(rms - AMPLITUDE / math.sqrt(2)) < 0.02 * AMPLITUDE, rms


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoundDaemon]:
    tmp: Path = tmp_path_factory.mktemp("alsa-loopback")
    flags = ("--backend", "alsa", "--alsa-device", DAEMON_SIDE)
    with running_daemon(tmp, *flags, control=True) as d:
        yield d


@pytest.fixture
def driver(daemon: SoundDaemon) -> Iterator[SoundDriver]:
    with Frontend.connect(daemon.socket) as frontend:
        yield SoundDriver(frontend)


def test_the_kernel_has_the_loopback_card() -> None:
    assert "Loopback" in alsaaudio.cards()
    assert Path("/proc/asound/Loopback").is_dir()


def test_the_card_is_offered_its_rates_not_only_the_one_it_was_opened_at() -> None:
    """pyalsaaudio configures a PCM (44.1 kHz) as it opens it, and then reports that one
    rate for a hw: device: the offer must not shrink to it (the guest asks for 48 kHz)."""
    rates = AlsaBackend(DAEMON_SIDE).capabilities(Direction.INPUT).rates
    assert {Rate.R44100, Rate.R48000} <= rates


def test_guest_playback_reaches_the_loopback_as_the_same_tone(
    daemon: SoundDaemon, driver: SoundDriver
) -> None:
    """1.5 s of a 1 kHz tone from the guest, recorded from the cable's other end."""
    assert daemon.ask("SET output on") == "OK"
    recorded = bytearray()
    stop = threading.Event()
    capture = open_pcm(alsaaudio.PCM_CAPTURE)

    def record() -> None:
        while not stop.is_set():
            frames, data = capture.read()  # type: ignore[attr-defined]
            if frames > 0:
                recorded.extend(data)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    try:
        driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
        done = driver.play([TONE] * 150, in_flight=8)
        assert {c.status for c in done} == {Status.OK}
        assert driver.pcm(Code.PCM_STOP, 0) is Status.OK
    finally:
        stop.set()
        recorder.join(5)
        capture.close()  # type: ignore[attr-defined]
    assert_is_the_tone(left(bytes(recorded)), 1.2)


def test_guest_capture_hears_the_host_signal_only_while_input_is_on(
    daemon: SoundDaemon, driver: SoundDriver
) -> None:
    """The test plays a 1 kHz tone into the cable throughout; the guest records."""
    assert daemon.ask("SET input off") == "OK"
    stop = threading.Event()
    playback = open_pcm(alsaaudio.PCM_PLAYBACK)

    def play() -> None:
        while not stop.is_set():
            playback.write(TONE)  # type: ignore[attr-defined]  # blocks: the card's clock

    player = threading.Thread(target=play, daemon=True)
    player.start()
    try:
        driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
        off = driver.capture(30, PERIOD, in_flight=8)
        assert all(c.data == bytes(PERIOD) for c in off), "host audio while input is off"

        assert daemon.ask("SET input on") == "OK"
        on = driver.capture(150, PERIOD, in_flight=8)
        # The capture PCM opens when input goes on; the tone follows within a few periods.
        assert_is_the_tone(left(b"".join(c.data for c in on)), 1.2)

        assert daemon.ask("SET input off") == "OK"
        after = driver.capture(30, PERIOD, in_flight=8)
        assert all(c.data == bytes(PERIOD) for c in after), "host audio after input off"
        assert {c.status for c in off + on + after} == {Status.OK}
    finally:
        stop.set()
        player.join(5)
        playback.close()  # type: ignore[attr-defined]
