"""The virtio-snd device (ID 25): four queues, two streams, the switches, the controls.

Queue 0 carries control requests (answered at once), queue 1 event buffers (kept: the
device has no jacks and raises no events), queues 2 and 3 the playback and capture
buffers, held by their stream until played or filled in real time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from ._playback import DeviceLock
from .backends.base import AudioBackend
from .controls import ELEMENTS, MasterControls
from .params import STREAM_DIRECTIONS
from .pcm_state import ACCEPTS_IO, PcmState
from .protocol import (
    QUEUE_SIZE,
    VIRTIO_SND_F_CTLS,
    Config,
    Direction,
    Queue,
    Status,
)
from .requests import ControlRequests
from .stream_io import STATUS_SIZE, XFER_SIZE, StreamIO, reject
from .switches import Switches

log = logging.getLogger(__name__)

#: Longest control request read (CTL_WRITE: 8-byte header + 512-byte value).
MAX_REQUEST = 1024


class SoundDevice(VhostUserBackend):
    name = "vhost-device-sound"
    num_queues = len(Queue)
    max_queue_size = QUEUE_SIZE
    protocol_features = ProtocolFeature.MQ

    def __init__(
        self, backend: AudioBackend, switches: Switches, *, controls: bool = False
    ) -> None:
        self.backend = backend
        self.switches = switches
        self.offers_controls = controls
        self.features = STANDARD_FEATURES | (VIRTIO_SND_F_CTLS if controls else 0)
        self.master = MasterControls()
        self._acked_controls = False
        self.streams: list[StreamIO] = []
        self.requests: ControlRequests | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._worker: Worker | None = None
        self._lock: DeviceLock | None = None

    # -- framework hooks ----------------------------------------------------------------

    def session_lock(self) -> DeviceLock:
        """A lock the host's realtime thread can try in C: a playing stream's buffers
        move in the host's cycles while nobody else touches rings or streams (see
        stream_io); each release re-arms them for what changed."""
        lock = DeviceLock()
        lock.refresh = self._refresh_host_cycles
        self._lock = lock
        return lock

    def _refresh_host_cycles(self) -> None:
        for stream in self.streams:
            stream.refresh_host_cycles()

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        (self._worker,) = workers
        self.streams = []
        for stream_id, direction in enumerate(STREAM_DIRECTIONS):
            stream = StreamIO(
                stream_id, direction, self.switches.switch(direction), self.backend, self._worker
            )
            vring = vrings[Queue.TX if direction is Direction.OUTPUT else Queue.RX]
            stream.vring = vring
            stream.lock = self._lock
            stream.pull = partial(self._take, vring)
            stream.route = partial(self._route, vring, direction=direction)
            stream.resume_kicks = partial(self._io, vring)
            self.streams.append(stream)
        self.requests = ControlRequests(
            self.streams, self.backend, self.master, lambda: self._acked_controls
        )
        self._unsubscribe = self.switches.subscribe(self._switch_flipped)

    def config_space(self) -> bytes:
        controls = len(ELEMENTS) if self.offers_controls else 0
        return Config(jacks=0, streams=len(STREAM_DIRECTIONS), chmaps=2, controls=controls).encode()

    def acked_features(self, features: int) -> None:
        self._acked_controls = bool(features & VIRTIO_SND_F_CTLS)

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == Queue.CONTROL:
            self._control(vring)
        elif vring.index in (Queue.TX, Queue.RX):
            self._io(vring)
        # Queue.EVENT: its buffers stay with the device until there is an event to send.

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index in (Queue.TX, Queue.RX):
            for stream in self._streams_on(vring):
                stream.queue_stopped()

    def reset(self) -> None:
        for stream in self.streams:
            stream.shutdown()
        self.master = MasterControls()
        self.backend.set_volume(Direction.OUTPUT, self.master.gain, self.master.muted)
        if self.requests is not None:
            self.requests.controls = self.master

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        # Not under the session lock (the session is ending): take it, so that no host
        # cycle is using a stream's buffers while they go.
        with self._lock if self._lock is not None else nullcontext():
            for stream in self.streams:
                stream.shutdown()
        self.backend.close()

    # -- queues -------------------------------------------------------------------------

    def _control(self, vring: Vring) -> None:
        assert self.requests is not None
        for batch in vring.batches():
            lengths = []
            for chain in batch:
                if chain.error or chain.writable_len < 4:
                    log.warning(
                        "control request %d unusable: %s",
                        chain.head,
                        chain.error or "no room for a status",
                    )
                    lengths.append(0)
                    continue
                response = self.requests.answer(chain.read(MAX_REQUEST), chain.writable_len)
                lengths.append(chain.write(response))
            vring.complete(batch, lengths)

    def _io(self, vring: Vring) -> None:
        """A kick on tx or rx. While the queue's stream runs, the stream's own period
        wake-ups take the buffers (`_take`) and kicks stay off: one wake-up per period
        instead of two."""
        direction = _direction_of(vring)
        started = [s for s in self._streams_on(vring) if s.state is PcmState.START]
        if started:
            self._take(vring)
            for stream in started:
                stream.queue_running()  # after a VM pause, the kick that restarts the ring
            return
        for batch in vring.batches():
            for chain in batch:
                self._route(vring, chain, direction)

    def _take(self, vring: Vring) -> None:
        direction = _direction_of(vring)
        for chain in vring.poll():
            self._route(vring, chain, direction)

    def _route(self, vring: Vring, chain: DescriptorChain, direction: Direction) -> None:
        """Hand a tx/rx buffer to its stream, or complete it at once with an error."""
        if chain.error or chain.readable_len < XFER_SIZE or chain.writable_len < STATUS_SIZE:
            log.warning(
                "I/O buffer %d malformed: %s",
                chain.head,
                chain.error or "too short for its header or status",
            )
            reject(vring, chain, Status.BAD_MSG)
            return
        stream_id = int.from_bytes(chain.read(XFER_SIZE), "little")  # struct virtio_snd_pcm_xfer
        if not 0 <= stream_id < len(self.streams):
            reject(vring, chain, Status.BAD_MSG)
            return
        stream = self.streams[stream_id]
        if stream.direction is not direction or stream.state not in ACCEPTS_IO:
            log.info(
                "stream %d: buffer refused (%s queue, state %s)",
                stream_id,
                direction.label,
                stream.state.value,
            )
            reject(vring, chain, Status.BAD_MSG)
            return
        if direction is Direction.OUTPUT:
            size = chain.readable_len - XFER_SIZE
        else:
            size = chain.writable_len - STATUS_SIZE
        if not stream.accepts(size):
            log.warning(
                "stream %d: a %d-byte buffer would put more than the stream's %d-byte "
                "buffer in flight; refused",
                stream_id,
                size,
                stream.params.buffer_bytes,
            )
            reject(vring, chain, Status.BAD_MSG)
            return
        stream.enqueue(vring, chain)

    def _streams_on(self, vring: Vring) -> list[StreamIO]:
        """The streams whose buffers travel on a data queue (tx: output, rx: input)."""
        direction = _direction_of(vring)
        return [s for s in self.streams if s.direction is direction]

    # -- switches -----------------------------------------------------------------------

    def _switch_flipped(self, direction: Direction, enabled: bool) -> None:
        """From the control socket's thread: take it to the worker that owns the streams."""
        worker = self._worker
        if worker is None:
            return

        def apply() -> None:
            for stream in self.streams:
                if stream.direction is direction:
                    stream.switch_changed(enabled)

        worker.call_soon(apply)


def _direction_of(vring: Vring) -> Direction:
    return Direction.OUTPUT if vring.index == Queue.TX else Direction.INPUT
