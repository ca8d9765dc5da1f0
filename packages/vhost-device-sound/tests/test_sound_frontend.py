"""vhost-device-sound through a real vhost-user socket, driven by the core's frontend
playing the virtio-snd driver (null backend unless a test says otherwise)."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vhost_device_sound._pcmring import PcmRing
from vhost_device_sound.backends.base import AudioBackend, StreamSetup
from vhost_device_sound.backends.null import NullBackend
from vhost_device_sound.device import SoundDevice
from vhost_device_sound.protocol import (
    VIRTIO_SND_F_CTLS,
    Chmap,
    ChmapInfo,
    Code,
    CtlInfo,
    Direction,
    Format,
    ItemHeader,
    PcmInfo,
    Rate,
    Status,
    encode_ctl_values,
)
from vhost_device_sound.switches import Switches
from vhost_device_sound.testing import Completed, SoundDriver, tone
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import running_daemon

PERIOD = 1920  # 10 ms of 48 kHz stereo S16
BOTH = frozenset(Direction)

Factory = Callable[[], SoundDevice]


@pytest.fixture
def switches() -> Switches:
    return Switches(BOTH)


@pytest.fixture
def backends() -> list[AudioBackend]:
    """Every backend instance the daemon made (one per connection)."""
    return []


def connect(tmp_path: Path, factory: Factory, *, controls: bool = False) -> Iterator[SoundDriver]:
    with (
        running_daemon(factory, tmp_path / "snd.sock"),
        Frontend.connect(tmp_path / "snd.sock") as frontend,
    ):
        yield SoundDriver(frontend, controls=controls)


@pytest.fixture
def driver(
    tmp_path: Path, switches: Switches, backends: list[AudioBackend]
) -> Iterator[SoundDriver]:
    def factory() -> SoundDevice:
        backends.append(NullBackend())
        return SoundDevice(backends[-1], switches)

    yield from connect(tmp_path, factory)


@pytest.fixture
def ctl_driver(
    tmp_path: Path, switches: Switches, backends: list[AudioBackend]
) -> Iterator[SoundDriver]:
    def factory() -> SoundDevice:
        backends.append(NullBackend())
        return SoundDevice(backends[-1], switches, controls=True)

    yield from connect(tmp_path, factory, controls=True)


# -- configuration and information --------------------------------------------------------


def test_config_space(driver: SoundDriver) -> None:
    assert driver.config() == (0, 2, 2, 0)  # jacks, streams, chmaps, controls


def test_features_offer_controls_only_when_asked(tmp_path: Path, switches: Switches) -> None:
    for controls in (False, True):
        with (
            running_daemon(
                lambda c=controls: SoundDevice(NullBackend(), switches, controls=c),
                tmp_path / f"f{controls}.sock",
            ),
            Frontend.connect(tmp_path / f"f{controls}.sock") as frontend,
        ):
            assert bool(frontend.get_features() & VIRTIO_SND_F_CTLS) is controls


def test_pcm_info(driver: SoundDriver) -> None:
    status, data = driver.query(Code.PCM_INFO, 2, 32)
    assert status is Status.OK
    out, inp = PcmInfo.decode(data[:32]), PcmInfo.decode(data[32:])
    assert (out.direction, inp.direction) == (Direction.OUTPUT, Direction.INPUT)
    for info in (out, inp):
        for fmt in (Format.U8, Format.S16, Format.S24, Format.S32):
            assert info.formats & 1 << fmt
        # The null backend has no host limits: every rate of the spec, 1 to 8 channels.
        assert info.rates == (1 << len(Rate)) - 1
        assert (info.channels_min, info.channels_max) == (1, 8)


def test_pcm_info_with_a_larger_item_size_is_zero_padded(driver: SoundDriver) -> None:
    status, data = driver.query(Code.PCM_INFO, 1, 40, start=1)
    assert status is Status.OK
    assert PcmInfo.decode(data).direction == Direction.INPUT and data[32:40] == bytes(8)


def test_chmaps_advertised_are_the_chmaps_stored(driver: SoundDriver) -> None:
    assert driver.config()[2] == 2
    status, data = driver.query(Code.CHMAP_INFO, 2, 24)
    assert status is Status.OK
    for i, direction in enumerate(Direction):
        info = ChmapInfo.decode(data[24 * i :])
        assert (info.direction, info.channels) == (direction, 2)
        assert info.positions[:2] == bytes([Chmap.FL, Chmap.FR])


def test_no_jacks(driver: SoundDriver) -> None:
    assert driver.query(Code.JACK_INFO, 0, 24)[0] is Status.OK
    assert driver.query(Code.JACK_INFO, 1, 24)[0] is Status.BAD_MSG
    remap = ItemHeader(Code.JACK_REMAP, 0).encode() + bytes(8)
    assert driver.status(remap) is Status.BAD_MSG


@pytest.mark.parametrize(
    "code, count, size, start",
    [
        (Code.PCM_INFO, 3, 32, 0),  # more streams than exist
        (Code.PCM_INFO, 1, 32, 2),  # start past the end
        (Code.PCM_INFO, 0xFFFFFFFF, 32, 1),  # count that would wrap
        (Code.PCM_INFO, 1, 16, 0),  # item size smaller than the struct
        (Code.CHMAP_INFO, 3, 24, 0),
    ],
)
def test_bad_queries(driver: SoundDriver, code: Code, count: int, size: int, start: int) -> None:
    request = struct.pack("<IIII", code, start, count, size)
    assert driver.status(request, 4 + 64) is Status.BAD_MSG


def test_response_buffer_too_small_for_the_items(driver: SoundDriver) -> None:
    request = struct.pack("<IIII", Code.PCM_INFO, 0, 2, 32)
    assert driver.status(request, 4 + 32) is Status.BAD_MSG


# -- bad requests -------------------------------------------------------------------------


def test_unknown_code_is_answered_not_supported(driver: SoundDriver) -> None:
    assert driver.status(struct.pack("<I", 0x7777)) is Status.NOT_SUPP
    assert driver.status(struct.pack("<II", 0x0106, 0)) is Status.NOT_SUPP  # just past STOP


@pytest.mark.parametrize("length", [0, 1, 3])
def test_request_shorter_than_a_header(driver: SoundDriver, length: int) -> None:
    assert driver.status(b"\x01\x01\x00\x00"[:length]) is Status.BAD_MSG


def test_truncated_set_params(driver: SoundDriver) -> None:
    assert driver.status(struct.pack("<II", Code.PCM_SET_PARAMS, 0)) is Status.BAD_MSG


def test_no_room_for_the_status(driver: SoundDriver) -> None:
    assert driver.request(struct.pack("<II", Code.PCM_PREPARE, 0), response_size=2) == b""
    assert driver.request(struct.pack("<II", Code.PCM_PREPARE, 0), response_size=0) == b""
    assert driver.pcm(Code.PCM_PREPARE, 0) is Status.OK  # still serving


@pytest.mark.parametrize(
    "code", [Code.PCM_PREPARE, Code.PCM_START, Code.PCM_STOP, Code.PCM_RELEASE, Code.PCM_SET_PARAMS]
)
def test_stream_id_out_of_range(driver: SoundDriver, code: Code) -> None:
    if code is Code.PCM_SET_PARAMS:
        assert driver.set_params(2) is Status.BAD_MSG
    else:
        assert driver.pcm(code, 2) is Status.BAD_MSG
        assert driver.pcm(code, 0xFFFFFFFF) is Status.BAD_MSG


@pytest.mark.parametrize(
    "params, status",
    [
        (dict(fmt=Format.A_LAW), Status.NOT_SUPP),
        (dict(fmt=Format.DSD_U32), Status.NOT_SUPP),
        (dict(rate=Rate.R5512), Status.OK),  # the null backend offers every rate
        (dict(rate=Rate.R384000), Status.OK),
        (dict(channels=0), Status.NOT_SUPP),
        (dict(channels=8, period_bytes=3840, buffer_bytes=7680), Status.OK),
        (dict(channels=9), Status.NOT_SUPP),
        (dict(features=1), Status.NOT_SUPP),
        (dict(period_bytes=0), Status.BAD_MSG),
        (dict(period_bytes=1921), Status.BAD_MSG),  # not whole frames
        (dict(period_bytes=1 << 30, buffer_bytes=1 << 31), Status.BAD_MSG),
        (dict(buffer_bytes=960), Status.BAD_MSG),  # smaller than a period
        (dict(fmt=Format.U8, channels=1, period_bytes=80, buffer_bytes=160), Status.OK),
        (dict(fmt=Format.S32, channels=6, period_bytes=2400, buffer_bytes=9600), Status.OK),
    ],
)
def test_set_params_checks(driver: SoundDriver, params: dict[str, int], status: Status) -> None:
    assert driver.set_params(0, **params) is status  # type: ignore[arg-type]


def test_format_and_rate_out_of_the_enums(driver: SoundDriver) -> None:
    raw = struct.pack("<IIIIIBBBx", Code.PCM_SET_PARAMS, 0, 8192, 4096, 0, 2, 200, 250)
    assert driver.status(raw) is Status.NOT_SUPP


# -- the PCM lifecycle through the device --------------------------------------------------

LIFECYCLE = [
    # (command, expected status) in order; BAD_MSG ones leave the state as it was.
    (Code.PCM_START, Status.BAD_MSG),  # not prepared
    (Code.PCM_STOP, Status.BAD_MSG),
    (Code.PCM_RELEASE, Status.BAD_MSG),
    (Code.PCM_PREPARE, Status.OK),  # on the default parameters
    (Code.PCM_STOP, Status.BAD_MSG),
    (Code.PCM_PREPARE, Status.OK),  # again: allowed
    (Code.PCM_START, Status.OK),
    (Code.PCM_START, Status.BAD_MSG),
    (Code.PCM_SET_PARAMS, Status.BAD_MSG),  # not while running
    (Code.PCM_PREPARE, Status.BAD_MSG),
    (Code.PCM_RELEASE, Status.BAD_MSG),
    (Code.PCM_STOP, Status.OK),
    (Code.PCM_START, Status.OK),  # pause release
    (Code.PCM_STOP, Status.OK),
    (Code.PCM_RELEASE, Status.OK),
    (Code.PCM_START, Status.BAD_MSG),
    (Code.PCM_STOP, Status.BAD_MSG),
    (Code.PCM_PREPARE, Status.OK),  # straight from RELEASE
    (Code.PCM_RELEASE, Status.OK),
    (Code.PCM_SET_PARAMS, Status.OK),
    (Code.PCM_SET_PARAMS, Status.OK),
    (Code.PCM_PREPARE, Status.OK),
    (Code.PCM_SET_PARAMS, Status.OK),  # from PREPARE
]


@pytest.mark.parametrize("stream", [0, 1])
def test_lifecycle(driver: SoundDriver, stream: int) -> None:
    for step, (command, expected) in enumerate(LIFECYCLE):
        if command is Code.PCM_SET_PARAMS:
            got = driver.set_params(stream)
        else:
            got = driver.pcm(command, stream)
        assert got is expected, f"step {step}: {command.name}"


# -- playback and capture in real time -----------------------------------------------------


def played(
    driver: SoundDriver, count: int, data: bytes = b"", in_flight: int | None = None
) -> list[float]:
    """Play `count` periods; returns when each came back (seconds after the start)."""
    data = data or tone(440, count * 0.01)
    t0 = time.monotonic()
    periods = [data[i * PERIOD : (i + 1) * PERIOD] for i in range(count)]
    done = driver.play(periods, in_flight or count)
    assert {c.status for c in done} == {Status.OK}
    return [c.at - t0 for c in done]


def captured(driver: SoundDriver, count: int, in_flight: int) -> list[Completed]:
    done = driver.capture(count, PERIOD, in_flight)
    assert {c.status for c in done} == {Status.OK}
    return done


def test_playback_takes_real_time(driver: SoundDriver) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 30)
    times = played(driver, 30)  # 300 ms
    assert 0.27 <= times[-1] <= 0.36, times[-1]
    assert times[0] < 0.05 and times[14] > 0.12  # spread out, not in one burst


@pytest.mark.parametrize("periods, per_wakeup", [(2, 1), (3, 1), (4, 2), (8, 2)])
def test_timer_plays_several_short_periods_per_wakeup(
    driver: SoundDriver, periods: int, per_wakeup: int
) -> None:
    """10 ms periods: the timer wakes every 20 ms when the guest's buffer holds at least
    four periods, never completing more than half of it at once."""
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * periods)
    times = played(driver, 24, in_flight=periods)
    assert 0.21 <= times[-1] <= 0.3
    wakeups = [[times[0]]]
    for t in times[1:]:
        if t - wakeups[-1][-1] < 0.004:
            wakeups[-1].append(t)
        else:
            wakeups.append([t])
    steady = [len(w) for w in wakeups[2:]]  # the first fill the ring
    assert max(steady) == per_wakeup, wakeups


def test_disabled_output_still_completes_in_real_time(
    driver: SoundDriver, switches: Switches
) -> None:
    switches.set(Direction.OUTPUT, False)
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 30)
    assert 0.27 <= played(driver, 30)[-1] <= 0.36


def test_switching_output_mid_stream_keeps_the_pace(
    driver: SoundDriver, switches: Switches
) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 30)
    flipper = threading.Timer(0.08, switches.set, (Direction.OUTPUT, False))
    back = threading.Timer(0.2, switches.set, (Direction.OUTPUT, True))
    flipper.start()
    back.start()
    assert 0.27 <= played(driver, 30)[-1] <= 0.36
    flipper.join()
    back.join()


class EagerHost(NullBackend):
    """A backend double with a host clock that takes audio in bursts ahead of time, as
    PipeWire does a quantum at the start of its cycle and an ALSA thread a whole PCM
    buffer: every 80 ms it takes all the output ring holds."""

    name = "eager-host"
    drives_clock = True

    def __init__(self) -> None:
        super().__init__()
        self.rings: dict[Direction, PcmRing] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def prepare(self, setup: StreamSetup) -> None:
        self.rings[setup.direction] = setup.ring

    def _run(self) -> None:
        sink = bytearray(1 << 20)
        while True:
            out = self.rings.get(Direction.OUTPUT)
            if out is not None:
                out.consume_into(sink)
            if self.stop_event.wait(0.08):
                return

    def close(self) -> None:
        self.stop_event.set()


def test_a_host_that_moves_audio_early_does_not_run_the_guest_ahead(tmp_path: Path) -> None:
    """Buffers come back when their audio would have been played from START, however
    early the host took it (issue 24)."""
    for driver in connect(tmp_path, lambda: SoundDevice(EagerHost(), Switches(BOTH))):
        driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 30)
        times = played(driver, 30)  # 300 ms, all of it taken by the host at once
        assert 0.29 <= times[-1] <= 0.36, times
        assert times[0] >= 0.009 and 0.14 <= times[14] <= 0.2, times


class LateMicrophone(NullBackend):
    """A backend double whose capture stream delivers only 100 ms after START (a host
    stream joining its graph), then a period of 0x11 bytes every 10 ms."""

    name = "late-microphone"
    drives_clock = True

    def __init__(self) -> None:
        super().__init__()
        self.ring: PcmRing | None = None
        self.started = threading.Event()
        self.stop_event = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def prepare(self, setup: StreamSetup) -> None:
        if setup.direction is Direction.INPUT:
            self.ring = setup.ring

    def start(self, stream_id: int) -> None:
        self.started.set()

    def _run(self) -> None:
        self.started.wait()
        if self.stop_event.wait(0.1):
            return
        t = time.monotonic()
        while self.ring is not None:
            self.ring.produce(b"\x11" * PERIOD)
            t += 0.01
            if self.stop_event.wait(max(t - time.monotonic(), 0)):
                return

    def close(self) -> None:
        self.stop_event.set()


def test_capture_is_not_late_by_the_hosts_start_up(tmp_path: Path) -> None:
    """What the host stream missed while it started is silence before its first
    samples, so the guest gets each period when it has been recorded, from START."""
    for driver in connect(tmp_path, lambda: SoundDevice(LateMicrophone(), Switches(BOTH))):
        assert driver.set_params(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 20) is Status.OK
        assert driver.pcm(Code.PCM_PREPARE, 1) is Status.OK
        for _ in range(20):
            driver.post_capture(PERIOD)
        t0 = time.monotonic()
        assert driver.pcm(Code.PCM_START, 1) is Status.OK
        done = driver.reap(driver.rx, 20)
        assert 0.19 <= done[-1].at - t0 <= 0.26, [c.at - t0 for c in done]
        data = b"".join(c.data for c in done)
        first = data.index(b"\x11")
        # About 100 ms of silence: more if the host thread itself started late.
        assert 0.07 * 48000 * 4 <= first <= 0.2 * 48000 * 4, first
        assert set(data[first:]) == {0x11}


def test_capture_delivers_silence_in_real_time_with_the_null_backend(driver: SoundDriver) -> None:
    driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 20)
    t0 = time.monotonic()
    for _ in range(20):
        driver.post_capture(PERIOD, publish=False)
    driver.rx.publish()
    done = driver.reap(driver.rx, 20)
    assert 0.17 <= done[-1].at - t0 <= 0.26
    assert all(c.status == Status.OK and c.data == bytes(PERIOD) for c in done)


def test_capture_buffers_queued_before_start(driver: SoundDriver) -> None:
    """Linux queues the whole capture buffer before it sends START."""
    assert driver.set_params(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 4) is Status.OK
    assert driver.pcm(Code.PCM_PREPARE, 1) is Status.OK
    for _ in range(4):
        driver.post_capture(PERIOD)
    time.sleep(0.05)
    assert driver.rx.driver.get_used() == []  # prepared, not started: held
    t0 = time.monotonic()
    assert driver.pcm(Code.PCM_START, 1) is Status.OK
    done = driver.reap(driver.rx, 4)
    assert 0.03 <= done[-1].at - t0 <= 0.08
    assert all(c.status == Status.OK and c.data == bytes(PERIOD) for c in done)


def test_set_params_gives_back_the_buffers_held_for_the_old_ones(driver: SoundDriver) -> None:
    """Found by fuzz/targets/sound_pcm.py: SET_PARAMS on a prepared stream that held
    buffers left them held under the new, smaller buffer_bytes, so the stream had more
    in flight than its buffer. They come back first, as on a second PREPARE."""
    assert driver.set_params(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 4) is Status.OK
    assert driver.pcm(Code.PCM_PREPARE, 1) is Status.OK
    for _ in range(4):
        driver.post_capture(PERIOD)
    time.sleep(0.05)
    assert driver.rx.driver.get_used() == []  # held
    assert driver.set_params(1, period_bytes=PERIOD, buffer_bytes=PERIOD) is Status.OK
    done = driver.reap(driver.rx, 4, timeout=1)
    assert [c.status for c in done] == [Status.OK] * 4


def test_release_gives_back_every_held_buffer(driver: SoundDriver) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 30)
    data = tone(440, 0.3)
    for i in range(30):
        driver.post_playback(data[i * PERIOD : (i + 1) * PERIOD], publish=False)
    driver.tx.publish()
    time.sleep(0.05)
    assert driver.pcm(Code.PCM_STOP, 0) is Status.OK
    t0 = time.monotonic()
    assert driver.pcm(Code.PCM_RELEASE, 0) is Status.OK
    driver.reap(driver.tx, 30, timeout=1)
    assert time.monotonic() - t0 < 0.15  # at once, not at the playback pace


def test_vm_pause_returns_held_buffers_and_resume_plays_on(driver: SoundDriver) -> None:
    """QEMU stops the rings with GET_VRING_BASE when the VM pauses and restarts them on
    resume, while the guest's driver still thinks the stream is running."""
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
    for _ in range(8):
        driver.post_playback(bytes(PERIOD), publish=False)
    driver.tx.publish()
    driver.reap(driver.tx, 1)
    base = driver.frontend.get_vring_base(driver.tx.index)  # pause
    assert {c.status for c in driver.ready(driver.tx)} == {Status.OK}  # the other 7, at once
    time.sleep(0.05)
    driver.frontend.start_vring(driver.tx, base)  # resume
    t0 = time.monotonic()
    assert played(driver, 10, in_flight=8)[-1] >= 0.08
    assert time.monotonic() - t0 <= 0.2  # in real time, not stalled


def test_stopped_stream_holds_its_buffers(driver: SoundDriver) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 10)
    assert driver.pcm(Code.PCM_STOP, 0) is Status.OK
    driver.post_playback(bytes(PERIOD))
    time.sleep(0.1)
    assert driver.tx.driver.get_used() == []
    assert driver.pcm(Code.PCM_START, 0) is Status.OK
    assert driver.reap(driver.tx, 1)[0].status == Status.OK


@pytest.mark.parametrize(
    "post, why",
    [
        (lambda d: d.post_playback(bytes(PERIOD), stream=1), "tx buffer for the input stream"),
        (lambda d: d.post_playback(bytes(PERIOD), stream=9), "no such stream"),
        (lambda d: d.post_capture(PERIOD, stream=0), "rx buffer for the output stream"),
    ],
)
def test_misdirected_buffers_are_refused(
    driver: SoundDriver, post: Callable[[SoundDriver], int], why: str
) -> None:
    driver.start_stream(0)
    driver.start_stream(1)
    post(driver)
    queue = driver.rx if "rx" in why else driver.tx
    assert driver.reap(queue, 1)[0].status == Status.BAD_MSG, why


def test_no_more_than_the_buffer_in_flight(driver: SoundDriver) -> None:
    """A guest cannot make the daemon hold more than its declared buffer: the buffer that
    would exceed it is refused at once, and the others still play."""
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 3)
    heads = [driver.post_playback(bytes(PERIOD), publish=False) for _ in range(4)]
    driver.tx.publish()
    done = {c.head: c.status for c in driver.reap(driver.tx, 4)}
    assert [done[h] for h in heads] == [Status.OK, Status.OK, Status.OK, Status.BAD_MSG]


def test_buffer_larger_than_the_stream_buffer_is_refused(driver: SoundDriver) -> None:
    driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 2)
    driver.post_capture(PERIOD * 3)
    (refused,) = driver.reap(driver.rx, 1)
    assert refused.status == Status.BAD_MSG and refused.data == b""
    driver.post_capture(PERIOD)
    assert driver.reap(driver.rx, 1)[0].status == Status.OK


def test_buffers_before_prepare_are_refused(driver: SoundDriver) -> None:
    driver.post_playback(bytes(PERIOD))
    assert driver.reap(driver.tx, 1)[0].status == Status.BAD_MSG


def test_malformed_io_buffers(driver: SoundDriver) -> None:
    driver.start_stream(0)
    ram = driver.ram
    hdr = ram.alloc(4)
    ram.memory.write(hdr, b"\0\0\0\0")
    tiny = ram.alloc(4)
    no_status = driver.tx.driver.add([(hdr, 4, False), (tiny, 4, True)])
    no_header = driver.tx.driver.add([(hdr, 2, False), (ram.alloc(8), 8, True)])
    outside = driver.tx.driver.add([(1 << 40, 4, False), (ram.alloc(8), 8, True)])
    driver.tx.publish()
    used = dict(driver.tx.wait_used(3))
    assert used[no_status] == 0 and used[outside] == 0
    assert used[no_header] == 8  # answered BAD_MSG in its status
    assert driver.pcm(Code.PCM_STOP, 0) is Status.OK  # the device is fine


# -- the input switch is a security boundary ------------------------------------------------


class HostMicrophone(NullBackend):
    """A backend double with a host clock: a thread that 'captures' a constant non-zero
    signal into the input ring every 10 ms, through the gated producer, as PipeWire's
    realtime callback does. Like the null backend it ignores the input switch
    (set_active), deliberately: the ring's gate must hold on its own."""

    name = "host-microphone"
    drives_clock = True

    def __init__(self) -> None:
        super().__init__()
        self.ring: PcmRing | None = None
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def prepare(self, setup: StreamSetup) -> None:
        if setup.direction is Direction.INPUT:
            self.ring = setup.ring

    def start(self, stream_id: int) -> None:
        if stream_id == 1 and self.thread is None:
            self.thread = threading.Thread(target=self._capture, daemon=True)
            self.thread.start()

    def _capture(self) -> None:
        while not self.stop_event.wait(0.01):
            if self.ring is not None:
                self.ring.produce(b"\x11\x22" * (PERIOD // 2))

    def close(self) -> None:
        self.stop_event.set()


def test_disabled_input_never_delivers_host_audio(tmp_path: Path) -> None:
    switches = Switches(frozenset({Direction.INPUT}))
    mic = HostMicrophone()
    for driver in connect(tmp_path, lambda: SoundDevice(mic, switches)):
        driver.start_stream(1, period_bytes=PERIOD, buffer_bytes=PERIOD * 8)
        heard = captured(driver, 10, in_flight=8)
        assert any(c.data.count(b"\x11\x22") for c in heard)  # the host signal arrives

        switches.set(Direction.INPUT, False)
        time.sleep(0.03)  # let the device take the switch
        t0 = time.monotonic()
        muted = captured(driver, 20, in_flight=8)
        assert all(c.data == bytes(PERIOD) for c in muted), "host audio leaked"
        assert 0.17 <= muted[-1].at - t0 <= 0.3  # silence, still in real time

        switches.set(Direction.INPUT, True)
        time.sleep(0.03)
        assert any(c.data.count(b"\x11\x22") for c in captured(driver, 5, in_flight=8))


# -- controls -------------------------------------------------------------------------------


def test_controls_need_the_feature(driver: SoundDriver) -> None:
    assert driver.query(Code.CTL_INFO, 2, 96)[0] is Status.NOT_SUPP
    assert driver.status(ItemHeader(Code.CTL_READ, 0).encode(), 516) is Status.NOT_SUPP


def test_control_elements(ctl_driver: SoundDriver, backends: list[NullBackend]) -> None:
    assert ctl_driver.config()[3] == 2
    status, data = ctl_driver.query(Code.CTL_INFO, 2, 96)
    assert status is Status.OK
    volume, switch = CtlInfo.decode(data[:96]), CtlInfo.decode(data[96:])
    assert volume.name.rstrip(b"\0") == b"Master Playback Volume"
    assert (volume.minimum, volume.maximum, volume.step) == (0, 100, 1)
    assert switch.name.rstrip(b"\0") == b"Master Playback Switch"

    def read(cid: int) -> int:
        answer = ctl_driver.request(ItemHeader(Code.CTL_READ, cid).encode(), 516)
        assert struct.unpack_from("<I", answer)[0] == Status.OK
        return struct.unpack_from("<i", answer, 4)[0]

    def write(cid: int, value: int) -> Status:
        return ctl_driver.status(
            ItemHeader(Code.CTL_WRITE, cid).encode() + encode_ctl_values([value])
        )

    assert (read(0), read(1)) == (100, 1)
    assert write(0, 50) is Status.OK and read(0) == 50
    gain, muted = backends[-1].volume[Direction.OUTPUT]  # type: ignore[attr-defined]
    assert gain == pytest.approx(0.125) and not muted
    assert write(1, 0) is Status.OK
    assert backends[-1].volume[Direction.OUTPUT] == (pytest.approx(0.125), True)  # type: ignore[attr-defined]
    assert write(0, 101) is Status.BAD_MSG and write(0, -1) is Status.BAD_MSG
    assert write(1, 2) is Status.BAD_MSG and read(0) == 50
    assert write(2, 0) is Status.BAD_MSG
    assert ctl_driver.status(ItemHeader(Code.CTL_WRITE, 0).encode() + bytes(10)) is Status.BAD_MSG
    assert ctl_driver.status(ItemHeader(Code.CTL_ENUM_ITEMS, 0).encode()) is Status.BAD_MSG
    assert ctl_driver.status(ItemHeader(Code.CTL_TLV_READ, 0).encode()) is Status.NOT_SUPP

    ctl_driver.frontend.reset_device()  # the volume goes back to full, on the host too
    ctl_driver.frontend.sync()
    assert backends[-1].volume[Direction.OUTPUT] == (1.0, False)  # type: ignore[attr-defined]


# -- connections ----------------------------------------------------------------------------


def test_each_connection_gets_a_fresh_device_and_shares_the_switches(
    tmp_path: Path, switches: Switches, backends: list[AudioBackend]
) -> None:
    def factory() -> SoundDevice:
        backends.append(NullBackend())
        return SoundDevice(backends[-1], switches)

    with running_daemon(factory, tmp_path / "snd.sock"):
        for _ in range(2):
            with Frontend.connect(tmp_path / "snd.sock") as frontend:
                driver = SoundDriver(frontend)
                assert driver.pcm(Code.PCM_START, 0) is Status.BAD_MSG  # fresh state
                driver.start_stream(0)
        switches.set(Direction.OUTPUT, False)
    assert len(backends) == 2
