"""The ALSA backend: one host PCM and one host thread per started stream, like upstream.

pyalsaaudio (0.11) releases the GIL only inside `snd_pcm_writei` / `snd_pcm_readi` (and
the drain in `close()`); opening, configuring, `drop()`, `avail()` and the poll helpers run
with the GIL held. So every PCM is opened with `PCM_NONBLOCK`: no ALSA call can park a
thread while it holds the GIL (not even opening a busy device), and the only place a
host thread waits is `select.poll` on the PCM's descriptors plus a wake-up eventfd, which
releases the GIL. The device's worker thread therefore never waits on ALSA, and `stop()`
ends a thread within one poll, whatever the sound card does.

Playback waits until the PCM has room for at least a period, takes that many whole
periods from the ring (`consume_into`, gated by the output switch), fills what the ring
did not have with silence (never old data), applies the guest's master volume and mute,
and writes them. The PCM's clock paces the loop; taking every free period at once lets a
thread that got the GIL late catch up in one write. While output is disabled the PCM
keeps being fed silence: the stream keeps its clock and the host sink sees neither an
underrun nor a restart.

Capture reads a period and hands it to `produce` (gated by the input switch). A capture
PCM is open only while input is enabled and the stream is prepared or running, and
only read while running: while input is disabled the microphone is not even opened, so
the host's "microphone in use" indication goes off; enabling input reopens it.

The rates offered are those the PCM accepts for playback, asked once (at the guest's
first PCM_INFO) of a playback PCM opened for the purpose; the capture side is not
opened for it (that would light the host's "microphone in use" indication), and a rate
it refuses is reported at PREPARE like any other refusal. Channels stay 1 to 6 and the
formats the backend converts: pyalsaaudio's channel query walks every count up to the
PCM's maximum, which for `null` is 2**32.

PCMs without a clock of their own (ALSA's `null`, a `file` plugin on `null`) would let
a loop spin at memory speed and run the guest's stream faster than real time; a
wall-clock pacer holds such a PCM to real time (plus one ALSA buffer for playback, as a
sound card takes one; capture gets a period once its time has passed). It turns itself off
for good as soon as the PCM shows a clock (its free space drops below a full buffer).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import alsaaudio  # type: ignore[import-not-found]  # a C extension without stubs
from typing_extensions import Buffer

from vhost_user_core import BackendError

from .._pcmring import PcmRing, scale_samples
from ..errors import AudioBackendError
from ..params import BASE_CAPABILITIES, BASE_RATES, Capabilities
from ..protocol import SAMPLE_BYTES, Direction, Format, Rate
from .base import AudioBackend, StreamSetup

log = logging.getLogger(__name__)

#: Sample formats the backend can open, as pyalsaaudio's constant names (all
#: little-endian; S24 is 24 bits in the low bytes of 32, like VIRTIO_SND_PCM_FMT_S24).
_ALSA_FORMATS: dict[Format, str] = {
    Format.U8: "PCM_FORMAT_U8",
    Format.S16: "PCM_FORMAT_S16_LE",
    Format.S24: "PCM_FORMAT_S24_LE",
    Format.S32: "PCM_FORMAT_S32_LE",
    Format.FLOAT: "PCM_FORMAT_FLOAT_LE",
}

#: ALSA periods per buffer unless the caller asks otherwise: enough to ride out a few
#: periods without the GIL, few enough to keep latency at a handful of periods.
DEFAULT_PERIODS = 4
#: Longest single poll: only matters if a PCM stalls (stop() wakes a thread at once).
_POLL_TIMEOUT = 0.5
#: How long stop() waits for a thread; nonblocking ALSA calls make this a safety net.
_JOIN_TIMEOUT = 2.0


class _Pcm(Protocol):
    """The part of pyalsaaudio's PCM object this backend uses (it ships no stubs)."""

    def info(self) -> dict[str, Any]: ...
    def state(self) -> int: ...
    def write(self, data: Buffer) -> int: ...
    def read(self) -> tuple[int, bytes]: ...
    def avail(self) -> int: ...
    def drop(self) -> int: ...
    def close(self) -> None: ...
    def polldescriptors(self) -> list[tuple[int, int]]: ...
    def polldescriptors_revents(self, descriptors: list[tuple[int, int]]) -> int: ...


@dataclass(frozen=True)
class _PcmSpec:
    """What to open: the negotiated parameters in ALSA's terms."""

    direction: Direction
    format: Format
    alsa_format: int
    rate: int
    channels: int
    period_frames: int
    periods: int

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_BYTES[self.format] * self.channels

    @property
    def kind(self) -> str:
        return "playback" if self.direction is Direction.OUTPUT else "capture"

    def silence(self, nbytes: int) -> bytes:
        """Silence in this format: unsigned 8-bit samples rest at 0x80, the rest at 0."""
        return (b"\x80" if self.format is Format.U8 else b"\x00") * nbytes


def _spec(setup: StreamSetup, periods: int) -> _PcmSpec:
    params = setup.params
    try:
        alsa_format = int(getattr(alsaaudio, _ALSA_FORMATS[params.format]))
    except KeyError:
        raise AudioBackendError(
            f"the ALSA backend has no sample format {params.format.name}"
        ) from None
    return _PcmSpec(
        direction=setup.direction,
        format=params.format,
        alsa_format=alsa_format,
        rate=params.rate.hz,
        channels=params.channels,
        period_frames=max(1, params.period_frames),
        periods=periods,
    )


def _open_pcm(device: str, spec: _PcmSpec) -> tuple[_Pcm, int, int]:
    """Open and configure `device`; returns the PCM, its actual period and buffer size
    in frames. pyalsaaudio silently keeps whatever the device chose when a parameter is
    refused, so the result is checked here and a mismatch is an error."""
    pcm_type = (
        alsaaudio.PCM_PLAYBACK if spec.direction is Direction.OUTPUT else alsaaudio.PCM_CAPTURE
    )
    try:
        pcm = cast(
            _Pcm,
            alsaaudio.PCM(
                type=pcm_type,
                mode=alsaaudio.PCM_NONBLOCK,
                device=device,
                channels=spec.channels,
                rate=spec.rate,
                format=spec.alsa_format,
                periodsize=spec.period_frames,
                periods=spec.periods,
            ),
        )
    except alsaaudio.ALSAAudioError as exc:
        raise AudioBackendError(
            f"cannot open ALSA PCM {device!r} for {spec.kind}: {exc}. "
            "`aplay -L` / `arecord -L` list the PCM names this host knows"
        ) from exc
    try:
        info = pcm.info()
        refused = []
        if info["format"] != spec.alsa_format:
            refused.append(f"format {spec.format.name} (it chose {info['format_name']})")
        if info["rate"] != spec.rate:
            refused.append(f"rate {spec.rate} Hz (it chose {info['rate']} Hz)")
        if info["channels"] != spec.channels:
            refused.append(f"{spec.channels} channels (it chose {info['channels']})")
        if refused:
            raise AudioBackendError(
                f"ALSA PCM {device!r} refuses {spec.kind} with {', '.join(refused)}; "
                "a converting PCM such as 'default' or 'plughw:0' accepts any of these"
            )
        return pcm, max(1, int(info["period_size"])), max(1, int(info["buffer_size"]))
    except BaseException:
        _close_pcm(pcm)
        raise


def _playback_rates(device: str) -> frozenset[Rate]:
    """The spec's rates `device` accepts for playback (the baseline if it cannot say)."""
    try:
        pcm = alsaaudio.PCM(type=alsaaudio.PCM_PLAYBACK, mode=alsaaudio.PCM_NONBLOCK, device=device)
    except alsaaudio.ALSAAudioError as exc:
        log.info(
            "ALSA PCM %r cannot be asked for its rates (%s): offering the baseline", device, exc
        )
        return BASE_RATES
    try:
        rates = pcm.getrates()
    except alsaaudio.ALSAAudioError:
        rates = None
    finally:
        _close_pcm(cast(_Pcm, pcm))
    if isinstance(rates, tuple):  # a continuous range (low, high)
        low, high = rates
        return frozenset(rate for rate in Rate if low <= rate.hz <= high)
    if isinstance(rates, list) and rates:
        return frozenset(rate for rate in Rate if rate.hz in rates)
    # A single rate is the one pyalsaaudio configured when it opened the PCM (44100 Hz
    # on a hw: device), not what the PCM can play: offer the baseline, as with no answer.
    return BASE_RATES


def _close_pcm(pcm: _Pcm) -> None:
    """Stop and close without blocking: pyalsaaudio's close() drains a playback PCM,
    which is immediate once the PCM has been dropped."""
    try:
        pcm.drop()
    except alsaaudio.ALSAAudioError:
        pass
    try:
        pcm.close()
    except alsaaudio.ALSAAudioError as exc:
        log.debug("closing an ALSA PCM: %s", exc)


class _Waker:
    """A host thread's stop flag and the eventfd that interrupts its polls."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._idle = select.poll()
        self._idle.register(self.fd, select.POLLIN)

    def wake(self) -> None:
        os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def idle(self, seconds: float) -> None:
        """Sleep up to `seconds`, or less if woken (stop, switch change)."""
        if self._idle.poll(max(0, math.ceil(seconds * 1000))):
            self.drain()

    def close(self) -> None:
        os.close(self.fd)


class _PcmPoller:
    """poll() over a PCM's descriptors and the wake-up fd (the GIL is free meanwhile)."""

    def __init__(self, pcm: _Pcm, waker: _Waker) -> None:
        self._pcm = pcm
        self._waker = waker
        self._fds = pcm.polldescriptors()
        self._poll = select.poll()
        for fd, events in self._fds:
            self._poll.register(fd, events)
        self._poll.register(waker.fd, select.POLLIN)

    def wait(self, seconds: float) -> bool:
        """True when the PCM can move a period (or has an error for read/write to report);
        False when woken or timed out."""
        revents: dict[int, int] = {}
        for fd, events in self._poll.poll(math.ceil(seconds * 1000)):
            if fd == self._waker.fd:
                self._waker.drain()
            else:
                revents[fd] = revents.get(fd, 0) | events
        if not revents:
            return False
        # Plugins may map their descriptors' events to something else (or nothing).
        return bool(
            self._pcm.polldescriptors_revents([(fd, revents.get(fd, 0)) for fd, _ in self._fds])
        )


class _Pacer:
    """Holds a PCM without a clock of its own to real time (see module doc): playback
    may run one buffer ahead, as a sound card takes a buffer's worth at once; capture
    none, as a sound card has a period only once it has recorded it (`ahead` -1 period:
    a read of a period waits until that period's time has passed). A PCM with a clock
    shows it by having less than a whole buffer free (playback) or readable (capture)
    after a transfer; from then on the PCM alone paces."""

    def __init__(self, rate: int, buffer_frames: int, ahead: int | None = None) -> None:
        self._rate = rate
        self._buffer_frames = buffer_frames
        self._ahead = buffer_frames if ahead is None else ahead
        self._start = time.monotonic()
        self._frames = 0
        self.clocked = False

    def moved(self, frames: int, pcm: _Pcm) -> None:
        self._frames += frames
        if not self.clocked:
            avail = pcm.avail()  # negative: an error code, which proves nothing
            self.clocked = 0 <= avail < self._buffer_frames

    def allowance(self) -> int:
        """Frames a PCM without a clock may take now: what real time has played plus
        one buffer, minus what it already took."""
        played = int((time.monotonic() - self._start) * self._rate)
        return played + self._buffer_frames - self._frames

    def delay(self) -> float:
        """Seconds to wait before the next transfer (0 or less: go ahead)."""
        if self.clocked:
            return 0.0
        ahead = (self._frames - self._ahead) / self._rate
        return ahead - (time.monotonic() - self._start)


@dataclass
class _Stream:
    """One prepared stream. While its thread runs, the thread owns `pcm`; otherwise the
    backend does (under its lock)."""

    setup: StreamSetup
    spec: _PcmSpec
    pcm: _Pcm | None
    period_frames: int
    buffer_frames: int
    waker: _Waker | None = None
    thread: threading.Thread | None = None
    #: Why the host thread ended, if it failed; start() reports it until re-prepared.
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class AlsaBackend(AudioBackend):
    """virtio-snd streams on an ALSA PCM (`device`, default `default`), both directions."""

    name = "alsa"
    drives_clock = True

    def __init__(self, device: str = "default", periods: int = DEFAULT_PERIODS) -> None:
        if periods < 2:
            raise ValueError("an ALSA buffer needs at least 2 periods")
        self.device = device
        self.periods = periods
        self._streams: dict[int, _Stream] = {}
        self._active: dict[Direction, bool] = {}
        self._volume: dict[Direction, tuple[float, bool]] = {}
        # Serialises the lifecycle calls (device worker) with set_active (switch
        # listeners run on the control socket's thread). Host threads never take it.
        self._lock = threading.RLock()
        self._capabilities: Capabilities | None = None

    def capabilities(self, direction: Direction) -> Capabilities:
        """The rates the PCM plays (asked once, see the module doc), for both directions."""
        with self._lock:
            if self._capabilities is None:
                rates = _playback_rates(self.device) or BASE_RATES
                self._capabilities = Capabilities(BASE_CAPABILITIES.formats, rates)
            return self._capabilities

    # -- lifecycle ---------------------------------------------------------------------

    def prepare(self, setup: StreamSetup) -> None:
        spec = _spec(setup, self.periods)
        with self._lock:
            self._discard(setup.stream_id)
            stream = _Stream(
                setup, spec, None, spec.period_frames, spec.period_frames * self.periods
            )
            if spec.direction is Direction.OUTPUT or self._capture_allowed(stream):
                # While input is off the microphone is not even opened: its parameters
                # are checked when input is enabled (start(), or the running thread).
                self._reopen(stream)
            self._streams[setup.stream_id] = stream
            log.debug(
                "ALSA %s PCM %r prepared for stream %d: %s %d Hz x%d, %d x %d frames%s",
                spec.kind, self.device, setup.stream_id, spec.format.name, spec.rate,
                spec.channels, stream.buffer_frames // stream.period_frames,
                stream.period_frames, "" if stream.pcm else " (not opened: input is off)",
            )  # fmt: skip

    def start(self, stream_id: int) -> None:
        with self._lock:
            stream = self._stream(stream_id)
            if stream.running:
                return
            self._stop_thread(stream)  # reap a thread that ended by itself (its eventfd)
            if stream.error is not None:
                raise AudioBackendError(f"{stream.error}; the stream must be prepared again")
            if stream.pcm is not None and stream.pcm.state() == alsaaudio.PCM_STATE_DISCONNECTED:
                raise AudioBackendError(
                    f"ALSA PCM {self.device!r} is gone (device unplugged?); "
                    "the stream must be prepared again"
                )
            wanted = stream.spec.direction is Direction.OUTPUT or self._capture_allowed(stream)
            if stream.pcm is None and wanted:
                # Closed while input was off (or abandoned): reopen here, so that a
                # refusal is this call's error rather than a thread's log line.
                self._reopen(stream)
            waker = _Waker()
            target = self._play if stream.spec.direction is Direction.OUTPUT else self._capture
            thread = threading.Thread(
                target=self._run,
                args=(stream, waker, target),
                name=f"alsa-{stream.spec.kind}-{stream_id}",
                daemon=True,
            )
            stream.waker, stream.thread = waker, thread
            thread.start()

    def stop(self, stream_id: int) -> None:
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._stop_thread(stream)

    def release(self, stream_id: int) -> None:
        with self._lock:
            self._discard(stream_id)

    def close(self) -> None:
        with self._lock:
            for stream_id in list(self._streams):
                self._discard(stream_id)

    # -- switches and controls ----------------------------------------------------------

    def set_active(self, direction: Direction, active: bool) -> None:
        """Output: nothing to do (the ring's gate turns the output into silence and the
        PCM keeps its clock). Input: the capture PCM closes while inactive, and reopens
        when active again if the stream is running."""
        with self._lock:
            self._active[direction] = active
            for stream in self._streams.values():
                if stream.spec.direction is not direction:
                    continue
                if stream.running and stream.waker is not None:
                    stream.waker.wake()
                elif direction is Direction.INPUT and not active:
                    self._close_stream_pcm(stream)

    def set_volume(self, direction: Direction, gain: float, muted: bool) -> None:
        """Applied in software (scale_samples) by the host thread: to each period before
        it is written (output), to each period read (input). Muted means silence, and
        the stream still moves: the guest's clock does not stop."""
        # One tuple, replaced whole: the host thread reads it without a lock.
        self._volume[direction] = (min(1.0, max(0.0, gain)), muted)

    # -- internals ------------------------------------------------------------------------

    def _stream(self, stream_id: int) -> _Stream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise AudioBackendError(f"stream {stream_id} is not prepared") from None

    def _capture_allowed(self, stream: _Stream) -> bool:
        """Both the ring's switch and the last set_active must say on."""
        return stream.setup.ring.switch.enabled and self._active.get(Direction.INPUT, True)

    def _stop_thread(self, stream: _Stream) -> None:
        thread, waker = stream.thread, stream.waker
        if thread is None or waker is None:
            return
        waker.stopping.set()
        waker.wake()
        thread.join(_JOIN_TIMEOUT)
        if thread.is_alive():
            # Closing the PCM under a live thread could free it mid-call: leave both
            # (the thread holds its own reference and exits once the call returns).
            log.error("ALSA thread %s did not stop; abandoning its PCM", thread.name)
            stream.pcm = None
        else:
            waker.close()
        stream.thread = stream.waker = None

    def _reopen(self, stream: _Stream) -> _Pcm:
        pcm, stream.period_frames, stream.buffer_frames = _open_pcm(self.device, stream.spec)
        stream.pcm = pcm
        return pcm

    def _close_stream_pcm(self, stream: _Stream) -> None:
        if stream.pcm is not None:
            _close_pcm(stream.pcm)
            stream.pcm = None

    def _discard(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._stop_thread(stream)
            self._close_stream_pcm(stream)

    def _gain(self, direction: Direction) -> tuple[float, bool]:
        return self._volume.get(direction, (1.0, False))

    # -- host threads ---------------------------------------------------------------------

    def _run(self, stream: _Stream, waker: _Waker, loop: Callable[[_Stream, _Waker], None]) -> None:
        """A host thread: run the loop; an error is logged once and ends this thread only."""
        try:
            loop(stream, waker)
        except Exception as exc:  # a thread boundary: whatever it is, log it and end here
            expected = isinstance(exc, alsaaudio.ALSAAudioError | BackendError | OSError)
            stream.error = f"ALSA {stream.spec.kind} on {self.device!r} failed: {exc}"
            log.error(
                "%s; stream %d is silent until prepared again",
                stream.error,
                stream.setup.stream_id,
                exc_info=not expected,
            )
        finally:
            if stream.pcm is None:
                pass
            elif stream.spec.direction is Direction.INPUT:
                # A capture PCM is open only while its thread reads: start() reopens it.
                self._close_stream_pcm(stream)
            else:
                try:
                    stream.pcm.drop()  # keeps its setup for the next start()
                except alsaaudio.ALSAAudioError:
                    pass

    def _play(self, stream: _Stream, waker: _Waker) -> None:
        pcm = stream.pcm
        if pcm is None:  # start() opens it; only a racing release() gets here
            return
        spec, ring = stream.spec, stream.setup.ring
        frame, period_frames = spec.frame_bytes, stream.period_frames
        chunk = bytearray(stream.buffer_frames * frame)
        view = memoryview(chunk)
        silence = memoryview(spec.silence(len(chunk)))
        poller = _PcmPoller(pcm, waker)
        pacer = _Pacer(spec.rate, stream.buffer_frames)
        period_s = period_frames / spec.rate
        pending = view[:0]  # filled and not yet written
        while not waker.stopping.is_set():
            delay = pacer.delay()
            if delay > 0:
                waker.idle(delay)
                continue
            if not poller.wait(_POLL_TIMEOUT):
                continue
            if not pending:
                # As many whole periods as the PCM has room for: a thread that got the
                # GIL late catches up in one write instead of one period per wake-up.
                room = pcm.avail() if pacer.clocked else pacer.allowance()
                periods = min(max(1, room // period_frames), len(chunk) // frame // period_frames)
                pending = view[: periods * period_frames * frame]
                self._next_chunk(spec, ring, pending, silence)
            frames = pcm.write(pending)
            if frames > 0:
                pending = pending[frames * frame :]
                pacer.moved(frames, pcm)
            elif frames == -errno.EPIPE:
                log.debug("ALSA playback underrun on %r", self.device)
            else:  # ready yet nothing taken: don't spin on it
                waker.idle(period_s)

    def _next_chunk(
        self, spec: _PcmSpec, ring: PcmRing, view: memoryview, silence: memoryview
    ) -> None:
        """Whole frames from the ring (gated: none while output is off), silence for the
        rest, then the guest's volume."""
        frame = spec.frame_bytes
        want = min(len(view), ring.fill // frame * frame)
        got = ring.consume_into(view[:want]) if want else 0
        gain, muted = self._gain(Direction.OUTPUT)
        if muted or gain <= 0.0:
            got = 0
        elif gain < 1.0 and got:
            scale_samples(view[:got], int(spec.format), gain)
        if got < len(view):
            view[got:] = silence[got : len(view)]

    def _capture(self, stream: _Stream, waker: _Waker) -> None:
        spec, ring = stream.spec, stream.setup.ring
        period_s = stream.period_frames / spec.rate
        poller: _PcmPoller | None = None
        pacer: _Pacer | None = None
        waited = False  # the last poll said readable
        while not waker.stopping.is_set():
            if not self._capture_allowed(stream):
                if stream.pcm is not None:
                    self._close_stream_pcm(stream)
                    poller = pacer = None
                    log.info("input disabled: ALSA capture PCM %r closed", self.device)
                waker.idle(_POLL_TIMEOUT)
                continue
            pcm = stream.pcm
            if pcm is None:
                pcm = self._reopen(stream)
                period_s = stream.period_frames / spec.rate
                log.info("input enabled: ALSA capture PCM %r open", self.device)
            if poller is None or pacer is None:
                poller = _PcmPoller(pcm, waker)
                pacer = _Pacer(spec.rate, stream.buffer_frames, -stream.period_frames)
            delay = pacer.delay()
            if delay > 0:
                waker.idle(delay)
                continue
            # Read first: a prepared capture PCM only starts (and polls readable) once read.
            frames, data = pcm.read()
            if frames > 0:
                waited = False
                pacer.moved(frames, pcm)
                ring.produce(self._captured(spec, data))
            elif frames == -errno.EPIPE:
                log.debug("ALSA capture overrun on %r", self.device)
            elif waited:  # readable yet nothing came: don't spin on it
                waited = False
                waker.idle(period_s)
            else:
                waited = poller.wait(_POLL_TIMEOUT)

    def _captured(self, spec: _PcmSpec, data: bytes) -> Buffer:
        gain, muted = self._gain(Direction.INPUT)
        if muted or gain <= 0.0:
            return spec.silence(len(data))
        if gain >= 1.0:
            return data
        scaled = bytearray(data)
        scale_samples(scaled, int(spec.format), gain)
        return scaled


__all__ = ["DEFAULT_PERIODS", "AlsaBackend"]
