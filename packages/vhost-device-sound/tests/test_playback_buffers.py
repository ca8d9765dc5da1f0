"""The playback path in C (`_playback.PlaybackBuffers`) through a real vhost-user socket:
what a playing stream takes on its own wake-ups, byte for byte, however the guest splits
its buffers, and what it hands back to the device's checks."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vhost_device_sound._pcmring import PcmRing
from vhost_device_sound._playback import STATUS_SIZE, XFER_SIZE, DeviceLock, PlaybackBuffers
from vhost_device_sound.backends.base import StreamSetup
from vhost_device_sound.backends.null import NullBackend
from vhost_device_sound.device import SoundDevice
from vhost_device_sound.protocol import Direction, PcmStatus, PcmXfer, Status
from vhost_device_sound.switches import Switches
from vhost_device_sound.testing import Completed, SoundDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import running_daemon

PERIOD = 1920  # 10 ms of 48 kHz stereo S16


class HostSpeaker(NullBackend):
    """A backend double with a host clock: a thread that consumes one period from the
    output ring every 10 ms through the gated consumer, as PipeWire's realtime callback
    does, and keeps what it got."""

    name = "host-speaker"
    drives_clock = True

    def __init__(self) -> None:
        super().__init__()
        self.ring: PcmRing | None = None
        self.heard = bytearray()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def prepare(self, setup: StreamSetup) -> None:
        if setup.direction is Direction.OUTPUT:
            self.ring = setup.ring

    def start(self, stream_id: int) -> None:
        if stream_id == 0 and self.thread is None:
            self.thread = threading.Thread(target=self._play, daemon=True)
            self.thread.start()

    def _play(self) -> None:
        chunk = bytearray(PERIOD)
        while not self.stop_event.wait(0.01):
            if self.ring is not None:
                got = self.ring.consume_into(chunk)
                self.heard += chunk[:got]

    def close(self) -> None:
        self.stop_event.set()


@pytest.fixture
def speaker() -> HostSpeaker:
    return HostSpeaker()


@pytest.fixture
def driver(tmp_path: Path, speaker: HostSpeaker) -> Iterator[SoundDriver]:
    switches = Switches(frozenset(Direction))
    with (
        running_daemon(lambda: SoundDevice(speaker, switches), tmp_path / "snd.sock"),
        Frontend.connect(tmp_path / "snd.sock") as frontend,
    ):
        yield SoundDriver(frontend)


def post_split(driver: SoundDriver, data: bytes, cuts: list[int], status_cut: int) -> int:
    """Post a tx buffer whose header and samples are split into several descriptors at
    the byte offsets `cuts` (of header + data), and whose status spans two descriptors
    (at `status_cut`); returns its head."""
    ram = driver.ram
    payload = PcmXfer(0).encode() + data
    bounds = [0, *cuts, len(payload)]
    buffers = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        gpa = ram.alloc(end - start)
        ram.memory.write(gpa, payload[start:end])
        buffers.append((gpa, end - start, False))
    status = ram.alloc(STATUS_SIZE)
    buffers += [(status, status_cut, True), (status + status_cut, STATUS_SIZE - status_cut, True)]
    head = driver.tx.driver.add(buffers)
    STATUS_AT[head] = status
    driver.tx.publish()
    return head


#: Where each split buffer's status is (by head; a head is reused once it is back).
STATUS_AT: dict[int, int] = {}


def reap_raw(driver: SoundDriver, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
    """(head, used length) of the next `count` tx buffers to come back."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        used = driver.tx.driver.get_used()
        if not used:
            driver.tx.driver.arm_interrupt()
            used = driver.tx.driver.get_used()
        got += used
        if len(got) < count and not used:
            assert time.monotonic() < deadline, f"{len(got)} of {count} came back"
            driver.tx.wait_call(max(deadline - time.monotonic(), 0.01))
    return got


def test_sizes_match_the_protocol() -> None:
    assert XFER_SIZE == PcmXfer.FORMAT.size
    assert STATUS_SIZE == PcmStatus.FORMAT.size


def test_a_new_queue_holds_nothing() -> None:
    held = PlaybackBuffers(3)
    assert (len(held), held.held_bytes, held.stream_id) == (0, 0, 3)
    held.clear()


def test_playing_stream_takes_split_buffers_byte_for_byte(
    driver: SoundDriver, speaker: HostSpeaker
) -> None:
    """Header split 1+3, samples in odd pieces, status across two descriptors; three in
    flight, each next one posted when one comes back, so most are taken by the playing
    stream's own wake-ups (kicks are off). The host hears exactly what was posted, in
    order, and every buffer comes back with an OK status and a bounded latency."""
    count, in_flight = 12, 3
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 4)
    periods = [bytes([i + 1]) * PERIOD for i in range(count)]
    cuts = [1, XFER_SIZE + 5, XFER_SIZE + 700]
    for i in range(in_flight):
        post_split(driver, periods[i], cuts, 1 + i % 7)
    posted, done = in_flight, 0
    while done < count:
        back = reap_raw(driver, 1)
        for head, length in back:  # all read before a new post may reuse their heads
            status, latency = struct.unpack("<II", driver.ram.memory.read(STATUS_AT[head], 8))
            assert (status, length) == (Status.OK, STATUS_SIZE)
            assert latency <= PERIOD * 4
        done += len(back)
        for _ in back:
            if posted < count:
                post_split(driver, periods[posted], cuts, 1 + posted % 7)
                posted += 1
    deadline = time.monotonic() + 1
    while len(speaker.heard) < PERIOD * count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bytes(speaker.heard) == b"".join(periods)


def refuses_what_is_not_its_own(driver: SoundDriver) -> None:
    driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 3)
    driver.post_playback(bytes(PERIOD))
    driver.reap(driver.tx, 1)  # the stream now takes buffers on its own wake-ups
    heads = [
        driver.post_playback(bytes(PERIOD), publish=False),
        driver.post_playback(bytes(PERIOD), stream=1, publish=False),
        driver.post_playback(bytes(PERIOD), publish=False),
        driver.post_playback(bytes(PERIOD * 3), publish=False),  # over the buffer
        driver.post_playback(bytes(PERIOD), publish=False),
    ]
    driver.tx.publish()
    done: dict[int, Completed] = {c.head: c for c in driver.reap(driver.tx, 5)}
    assert [done[h].status for h in heads] == [
        Status.OK,
        Status.BAD_MSG,
        Status.OK,
        Status.BAD_MSG,
        Status.OK,
    ]


def test_playing_stream_refuses_what_is_not_its_own(driver: SoundDriver) -> None:
    """Buffers a playing stream pops that are another stream's, or over its buffer, or
    malformed, get the device's usual BAD_MSG; the good ones around them play."""
    refuses_what_is_not_its_own(driver)


def test_period_clock_hands_what_is_not_its_own_to_the_device(tmp_path: Path) -> None:
    """The null backend's period clock takes buffers on its own thread, without the
    GIL; what is not plainly the stream's it leaves to the worker, which refuses it
    with the device's usual checks, in order with the good ones."""
    devices: list[SoundDevice] = []

    def factory() -> SoundDevice:
        devices.append(SoundDevice(NullBackend(), Switches(frozenset(Direction))))
        return devices[-1]

    with (
        running_daemon(factory, tmp_path / "snd.sock"),
        Frontend.connect(tmp_path / "snd.sock") as frontend,
    ):
        driver = SoundDriver(frontend)
        refuses_what_is_not_its_own(driver)
        assert driver.play([bytes(PERIOD)] * 10, 3)
        played = devices[-1].streams[0].played
        assert played.period_clock_running and played.rt_armed
        assert played.rt_cycles >= 4


def test_device_lock_is_reentrant_and_refreshes_at_the_outermost_release() -> None:
    lock = DeviceLock()
    refreshed: list[bool] = []

    def refresh() -> None:
        refreshed.append(lock.acquire(blocking=False))
        lock.release()  # a nested release: no refresh of its own

    lock.refresh = refresh
    with lock:
        with lock:
            pass
        assert refreshed == []
    assert refreshed == [True]  # held (re-entered) while it ran, and released after
    taken = threading.Event()
    others: list[bool] = []

    def other() -> None:
        others.append(lock.acquire(blocking=False))
        taken.set()

    with lock:
        threading.Thread(target=other).start()
        taken.wait(5)
        assert others == [False]  # held by this thread
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _record(errors, lock.release))
        thread.start()
        thread.join()
        assert [type(e) for e in errors] == [RuntimeError]  # not that thread's to release
    assert refreshed == [True, True]
    assert lock.acquire(blocking=False)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def _record(errors: list[BaseException], call: Callable[[], None]) -> None:
    try:
        call()
    except RuntimeError as exc:
        errors.append(exc)


def test_latency_is_what_is_left_to_hear_of_the_buffer(tmp_path: Path) -> None:
    """A completion's latency is what of that buffer is still to be heard, not the
    audio queued behind it: Linux adds it to the frames its pointer still counts as
    unplayed (which include those queued buffers) for snd_pcm_delay(). The null
    backend's clock completes what it has played: nothing of it is left."""
    switches = Switches(frozenset(Direction))
    with (
        running_daemon(lambda: SoundDevice(NullBackend(), switches), tmp_path / "snd.sock"),
        Frontend.connect(tmp_path / "snd.sock") as frontend,
    ):
        driver = SoundDriver(frontend)
        driver.start_stream(0, period_bytes=PERIOD, buffer_bytes=PERIOD * 4)
        done = driver.play([bytes(PERIOD)] * 24, 4)
    assert [c.latency for c in done] == [0] * 24
