"""One PCM stream's data path, run on the device's worker thread.

Playback keeps a play-out clock anchored at START: each tx buffer has a deadline, when
an ideal device would have played its last frame, and is never completed before it,
because Linux's virtio_snd moves the guest's hardware pointer by a whole period per
completed buffer and a host that takes audio in bigger or earlier chunks than the
guest's periods would otherwise run the guest ahead of real time. (Capture needs no
such clock: a host cannot deliver frames before they are recorded.)

Playback: the guest's tx buffers queue up; their samples are copied into the stream's
PcmRing as room allows, from which the backend's audio thread plays them. With ALSA a
buffer is completed once its deadline has passed and all of it is in the ring (a host
slower than the clock leaves no room, which holds the guest back), a one-shot timer set
for the next deadline. With PipeWire it is completed in the cycle that took its last
frame, once its deadline falls within that cycle, by PipeWire's realtime thread itself
(the ring's host cycle hook): no worker wake-up at all while it plays. While the output
is disabled (or the backend has no clock) a period clock discards the ring's samples at
the clock's pace and completes what it played: the output's own C thread when the
device's lock is a DeviceLock (the worker's timer otherwise). A completion's latency
is what of that buffer is still to be heard (at most the host's cycle ahead of its
deadline; 0 from the period clock), not the audio queued behind it, which the guest's
pointer already counts as unplayed. The buffers are held, fed and returned in C
(`_playback.PlaybackBuffers`): each of those wake-ups is one call, and what a host or
clock cycle cannot take as plainly the stream's own it leaves to the worker.

Capture: the backend produces host samples into the ring and the worker moves them into
the guest's rx buffers, checking the direction's switch before every chunk, and returns
each one as soon as it is full. A host stream takes a while to deliver once activated
(up to a quantum of the graph it joins, 170 ms with PipeWire): the audio it missed
since START (or since the input was switched on) is silence ahead of its first
samples, as a sound card recording from START would have it, so the guest is not late
by that much for the rest of the stream. While the input is disabled (or the backend
has no clock) the timer fills the buffers with silence in real time instead, and the
ring is emptied so no stale host audio survives a switch.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vhost_user_core import DescriptorChain, QueueError, TimerHandle, Vring, Worker

from ._pcmring import PcmRing, Switch
from ._playback import MAX_CLOCK_DEBT, DeviceLock, PlaybackBuffers
from .backends.base import AudioBackend, StreamSetup
from .params import DEFAULT_PARAMS, PcmParams
from .pcm_state import INITIAL_STATE, PcmState
from .protocol import QUEUE_SIZE, Direction, PcmStatus, PcmXfer, Status

log = logging.getLogger(__name__)

_STATUS = PcmStatus.FORMAT
STATUS_SIZE = _STATUS.size
XFER_SIZE = PcmXfer.FORMAT.size
#: Ring size: a few periods, so the host thread always finds one ready, bounded so a
#: guest cannot make us allocate much whatever period it asks for.
RING_PERIODS = 3
RING_MIN, RING_MAX = 16 * 1024, 1024 * 1024


class IoMessage:
    """A guest rx buffer held until it is filled (tx buffers are PlaybackBuffers').

    Capture fills `data` and writes it into the guest's buffer once, when full: cheaper
    than keeping views of guest memory and walking them per period."""

    __slots__ = ("vring", "chain", "data", "size", "done")

    def __init__(self, vring: Vring, chain: DescriptorChain) -> None:
        self.vring = vring
        self.chain = chain
        self.data = bytearray(max(chain.writable_len - STATUS_SIZE, 0))
        self.size = len(self.data)
        self.done = 0


def complete(vring: Vring, chain: DescriptorChain, status: int, latency: int, written: int) -> None:
    """Write the pcm_status into the buffer's last bytes and return it to the guest.

    A ring that was stopped meanwhile (GET_VRING_BASE) takes nothing back: the buffer is
    dropped with it."""
    chain.write(_STATUS.pack(status, latency), chain.writable_len - STATUS_SIZE)
    if not vring.ready:
        return
    try:
        vring.complete_one(chain.head, written + STATUS_SIZE)
    except QueueError as exc:
        log.warning("cannot complete an I/O buffer: %s", exc)


def finish(msg: IoMessage, latency: int) -> None:
    """Return a held rx buffer: captured data first (what was filled of it), then status."""
    written = 0
    if msg.done:
        written = msg.chain.write(memoryview(msg.data)[: msg.done])
    complete(msg.vring, msg.chain, Status.OK, latency, written)


def reject(vring: Vring, chain: DescriptorChain, status: Status) -> None:
    """Complete a buffer the device will not use (bad header, wrong stream or state)."""
    if chain.writable_len >= STATUS_SIZE:
        complete(vring, chain, status, 0, 0)
    else:  # no room for a status: give it back empty
        vring.complete_one(chain.head, 0)


@dataclass
class StreamIO:
    """State and data path of one stream (0: output, 1: input)."""

    stream_id: int
    direction: Direction
    switch: Switch
    backend: AudioBackend
    worker: Worker
    state: PcmState = INITIAL_STATE
    params: PcmParams = DEFAULT_PARAMS
    ring: PcmRing | None = None
    #: Capture: the rx buffers held. Playback's are in `played`.
    pending: deque[IoMessage] = field(default_factory=deque)
    played: PlaybackBuffers = field(init=False)
    #: The queue this stream's buffers travel on (set by the device).
    vring: Vring | None = None
    #: The device's hooks on this stream's queue: take what the guest posted since the
    #: last wake-up (called at every period while started: the guest's kicks are off
    #: then), hand the device one buffer to check and route (what a playing stream
    #: pops that is not plainly its own), and wait for kicks again once the stream
    #: leaves START.
    pull: Callable[[], None] = lambda: None
    route: Callable[[DescriptorChain], None] = lambda chain: None
    resume_kicks: Callable[[], None] = lambda: None
    #: The device's session lock, if it is a DeviceLock: an output's buffers then move
    #: in PipeWire's cycles or the period clock's (see the module doc) instead of on
    #: worker wake-ups.
    lock: DeviceLock | None = None
    _clock: TimerHandle | None = None
    _deadline: float = 0.0
    _ticks: int = 1
    #: One-shot timer for the next tx buffer deadline (see the module doc), and when.
    _due_timer: TimerHandle | None = None
    _due_at: float = 0.0
    #: Capture: when the host stream was activated (START, input switched on), until
    #: its first samples arrive and the silence before them is filled in.
    _activated: float | None = None
    #: Started, but its queue was stopped by the frontend (VM paused): host stream
    #: inactive and no pacing until the queue runs again.
    _suspended: bool = False

    def __post_init__(self) -> None:
        self.played = PlaybackBuffers(self.stream_id)

    # -- lifecycle (control requests) ----------------------------------------------------

    def prepare(self) -> None:
        """Fresh ring and host stream for the current parameters. Buffers still held
        from before (a driver preparing again after an xrun) are given back first."""
        self._stop_due()
        self.flush()
        self._drop_ring()
        capacity = min(max(RING_PERIODS * self.params.period_bytes, RING_MIN), RING_MAX)
        self.ring = PcmRing(capacity, self.switch)
        # Wake the worker once per host period (a few short guest periods) when the
        # guest's buffer has slack, not every realtime cycle (see consume_rt).
        self.ring.notify_every = self.params.wakeup_frames * self.params.frame_bytes
        self.worker.add_reader(self.ring.notify_fd, self._host_moved_data)
        if self._host_cycles_possible():
            assert self.lock is not None
            pool = self.vring.queue.max_size if self.vring is not None else QUEUE_SIZE
            self.played.attach_host(self.ring, self.lock, pool)
        self.backend.prepare(
            StreamSetup(
                self.stream_id, self.direction, self.params, self.params.positions, self.ring
            )
        )

    def start(self) -> None:
        now = time.monotonic()
        if self.direction is Direction.OUTPUT:
            self.played.start_clock(now, self.params.bytes_per_second)
        else:
            self._activated = now
        self.backend.start(self.stream_id)
        self.backend.set_active(self.direction, self.switch.enabled)
        self._feed()
        self._repace(now)
        if self.direction is Direction.OUTPUT and not self._paced():
            self._host_moved_data()  # sets the timer for the first deadline

    def stop(self) -> None:
        self._stop_clock()
        self._stop_due()
        self.backend.stop(self.stream_id)
        self.resume_kicks()

    def release(self) -> None:
        """Close the host stream and give every held buffer back (the driver waits for
        them before it goes on)."""
        self._report_cycles()
        self._stop_clock()
        self._stop_due()
        self.backend.release(self.stream_id)
        self.flush()
        self._drop_ring()
        self.resume_kicks()

    def shutdown(self) -> None:
        """Reset or end of connection: the guest's rings are gone, so held buffers are
        forgotten rather than completed."""
        self._report_cycles()
        self._stop_clock()
        self._stop_due()
        self._suspended = False
        if self.state in (PcmState.PREPARE, PcmState.START, PcmState.STOP):
            self.backend.release(self.stream_id)
        self.pending.clear()
        self.played.clear()
        self._drop_ring()
        self.state = INITIAL_STATE

    def queue_stopped(self) -> None:
        """The frontend stopped the data ring (VM paused or reset): return what we hold
        while it can still be returned, drop the ring's copy of it, and leave the host
        stream inactive and the stream unpaced until the queue runs again."""
        self._stop_clock()
        self._cancel_due_timer()
        self.flush()
        if self.ring is not None:
            self.ring.clear()
        if self.state is PcmState.START and not self._suspended:
            self._suspended = True
            self.backend.set_active(self.direction, False)

    def queue_running(self) -> None:
        """The queue takes buffers (again): a stream still started after a VM pause
        resumes where the guest's driver thinks it is."""
        if self._suspended:
            self._suspended = False
            if self.state is PcmState.START:
                self.backend.set_active(self.direction, self.switch.enabled)
        self._repace()

    def accepts(self, size: int) -> bool:
        """Whether a buffer of `size` bytes fits in flight: a driver never has more than
        its buffer (SET_PARAMS buffer_bytes) with the device, and a guest that tries
        must not make the daemon hold more."""
        if self.direction is Direction.OUTPUT:
            held = self.played.held_bytes
        else:
            held = sum(msg.size for msg in self.pending)
        return held + size <= self.params.buffer_bytes

    # -- buffers -------------------------------------------------------------------------

    def enqueue(self, vring: Vring, chain: DescriptorChain) -> None:
        """Hold a buffer the device has checked (see SoundDevice._route)."""
        if self.direction is Direction.OUTPUT:
            self.played.append(chain)
            self._feed()
            return
        self.pending.append(IoMessage(vring, chain))
        if self.ring is not None and self.state is PcmState.START:
            self._deliver_captured()

    def flush(self) -> None:
        """Give back every held buffer now (played or not)."""
        latency = self.ring.fill if self.ring is not None else 0
        if self.direction is Direction.OUTPUT:
            self.played.flush(self.vring, 0)  # not played: nothing of them to be heard
        while self.pending:
            finish(self.pending.popleft(), latency)

    def switch_changed(self, enabled: bool) -> None:
        """The direction's switch flipped (the ring's gate already follows it)."""
        if self.direction is Direction.INPUT and not enabled and self.ring is not None:
            self.ring.clear()  # captured while enabled but not yet delivered: drop it
        if self.state is PcmState.START and not self._suspended:
            if self.direction is Direction.INPUT:
                self._activated = time.monotonic() if enabled else None
            self.backend.set_active(self.direction, enabled)
            self._repace()

    # -- the data path -------------------------------------------------------------------

    def _host_moved_data(self) -> None:
        """The backend's audio thread consumed (playback) or produced (capture) data."""
        ring = self.ring
        if ring is None:
            return
        started = self.state is PcmState.START
        if self.direction is Direction.OUTPUT:
            limit = self.params.buffer_bytes
            self._wake_at(self.played.step(self.vring, ring, self.route, limit, started))
            return
        ring.drain_notifications()
        if started:
            self.pull()
        self._deliver_captured()

    def _feed(self) -> None:
        """Copy queued playback samples into the ring while it has room."""
        if self.ring is not None and self.direction is Direction.OUTPUT:
            self.played.feed(self.ring)

    def _deliver_captured(self) -> None:
        """Move captured host samples into the guest's buffers, one chunk at a time, each
        only if the input is enabled at that moment. With no buffer to fill, only the
        newest host period is kept: older audio would reach the guest late, and stay
        late (the guest missed it, an overrun)."""
        ring = self.ring
        assert ring is not None
        if self._activated is not None and ring.fill and self.switch.enabled:
            self._fill_missed(self._activated, ring.fill)
        while self.pending and (ring.fill or self.pending[0].done == self.pending[0].size):
            if not self.switch.enabled:
                ring.clear()
                return
            msg = self.pending[0]
            msg.done += ring.read_into(memoryview(msg.data)[msg.done :])
            if msg.done == msg.size:
                finish(self.pending.popleft(), ring.fill)
            else:
                break
        if not self.pending and ring.fill > ring.notify_every:
            ring.discard(ring.fill - ring.notify_every)

    def _fill_missed(self, since: float, queued: int) -> None:
        """The host's first samples since `since` are here (`queued` bytes of them):
        silence in the guest's buffers for the time before them."""
        self._activated = None
        if not self.backend.drives_clock:
            return
        params = self.params
        missed = int((time.monotonic() - since) * params.bytes_per_second) - queued
        missed = min(max(missed, 0), params.buffer_bytes) // params.frame_bytes * params.frame_bytes
        for msg in self.pending:
            if not missed:
                break
            n = min(missed, msg.size - msg.done)
            msg.done += n  # the buffer starts zeroed: silence needs no writing
            missed -= n

    def _fill_silence(self, count: int) -> None:
        """Capture paced by the timer: `count` bytes of silence into the guest's buffers."""
        while count and self.pending:
            msg = self.pending[0]
            n = min(count, msg.size - msg.done)
            msg.done += n  # the buffer starts zeroed: silence needs no writing
            count -= n
            if msg.done == msg.size:
                finish(self.pending.popleft(), 0)

    # -- pacing --------------------------------------------------------------------------

    def _wake_at(self, due: float) -> None:
        """A buffer is ready but not yet due at `due` (0: none): come back for it, and
        for the short periods due after it, on the same grid as the period timer (every
        `periods_per_wakeup` periods: a wake-up costs more than its work). A host
        notification that comes first takes the timer's place. While the period timer
        paces the stream, it comes back anyway."""
        if self._paced():
            return
        if not due:
            self._cancel_due_timer()
            return
        at = due + (self.params.periods_per_wakeup - 1) * self.params.period_seconds
        if self._due_timer is not None:
            if self._due_at == at:
                return
            self._due_timer.cancel()
        self._due_at = at
        self._due_timer = self.worker.call_later(at - time.monotonic(), self._due_reached)

    def _due_reached(self) -> None:
        self._due_timer = None
        if self.state is PcmState.START and not self._suspended:
            self._host_moved_data()

    def _cancel_due_timer(self) -> None:
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None

    def _stop_due(self) -> None:
        """Out of START: no deadlines until the next one."""
        self._cancel_due_timer()
        self.played.stop_clock()
        self._activated = None

    def _repace(self, now: float | None = None) -> None:
        """The timer paces the stream while it runs without a host clock: a backend that
        has none, or a disabled direction (the host stream is inactive then). It starts
        at `now`, the anchor of the buffers' deadlines, at START."""
        host_clock = self.backend.drives_clock and self.switch.enabled
        if self.state is PcmState.START and not host_clock and not self._suspended:
            if not self._paced():
                self._cancel_due_timer()
                self._ticks = self.params.periods_per_wakeup
                self._deadline = time.monotonic() if now is None else now
                if self.ring is not None and self._host_cycles_possible():
                    # Output: the period clock's own C thread (see the module doc).
                    self.played.clock_start(
                        self._deadline,
                        self.params.period_seconds * self._ticks,
                        self.params.period_bytes * self._ticks,
                    )
                else:
                    self._schedule()
        else:
            self._stop_clock()

    def _schedule(self) -> None:
        """The next tick, on the grid; behind it (a loaded host), catching up at twice
        the pace, as the output's period clock does (`_playback._next_tick`)."""
        interval = self.params.period_seconds * self._ticks
        self._deadline += interval
        now = time.monotonic()
        if self._deadline >= now:
            at = self._deadline
        elif self._deadline < now - MAX_CLOCK_DEBT:
            at = self._deadline = now + interval
        else:
            at = now + interval / 2
        self._clock = self.worker.call_later(at - now, self._tick)

    def _tick(self) -> None:
        """One period tick: plays (discards) or records (silence) `_ticks` periods, on a
        grid anchored at START: what it completes is on time by construction."""
        self._clock = None
        period = self.params.period_bytes * self._ticks
        if self.direction is Direction.OUTPUT:
            if self.ring is not None:
                limit = self.params.buffer_bytes
                self.played.step(self.vring, self.ring, self.route, limit, True, period)
            else:
                self.pull()
        else:
            self.pull()
            if self.ring is not None:
                self.ring.clear()
            self._fill_silence(period)
        self._schedule()

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        self.played.clock_stop()

    def _paced(self) -> bool:
        """Whether the period timer (or the output's period clock) paces the stream."""
        return self._clock is not None or self.played.period_clock_running

    def _drop_ring(self) -> None:
        if self.ring is not None:
            self.played.detach_host()
            self.worker.remove_reader(self.ring.notify_fd)
            self.ring = None

    # -- the realtime path -----------------------------------------------------------------

    def _report_cycles(self) -> None:
        if self.direction is Direction.OUTPUT and self.played.rt_cycles:
            log.debug(
                "stream %d: %d host or clock cycles moved its buffers, %d left it to the "
                "worker; the period clock woke behind its grid %d times, and played %d "
                "bytes the guest had not posted in time",
                self.stream_id,
                self.played.rt_cycles,
                self.played.rt_busy,
                self.played.clock_behind,
                self.played.clock_starved,
            )

    def _host_cycles_possible(self) -> bool:
        """An output whose buffers can move without the worker: in the host's cycles
        (PipeWire) or the period clock's (the null backend, or the output switched off).
        Not with ALSA, whose thread is Python and takes a whole PCM buffer at a time."""
        return (
            self.direction is Direction.OUTPUT
            and (self.backend.host_cycles or not self.backend.drives_clock)
            and isinstance(self.lock, DeviceLock)
        )

    def refresh_host_cycles(self) -> None:
        """Arm the host's cycles to take and return this stream's buffers exactly while
        it plays through the host: started, not paused, output on (so the period timer
        does not pace it) and its ring running. Called, lock held, after anything that
        may have changed one of those (DeviceLock.refresh)."""
        if self.ring is None or not self._host_cycles_possible():
            return
        vring = self.vring
        host_plays = self.backend.host_cycles and self.switch.enabled and not self._paced()
        armed = (
            self.state is PcmState.START
            and not self._suspended
            and (host_plays or self.played.period_clock_running)
            and vring is not None
            and vring.active
        )
        self.played.rt_configure(armed, vring, self.params.buffer_bytes)
