"""The backend: eventq (device → guest) and statusq (guest → device) of one input
device, per VMM connection.

Events are passed on in frames, each ending at a SYN_REPORT, and a frame goes to the
guest only whole: the device holds the guest's eventq buffers (one event each, as the
Linux driver posts them) and completes a frame once it has a buffer for every event.
Frames waiting for buffers are bounded; past the bound the waiting ones are replaced
by one SYN_DROPPED, as evdev does for a client that reads too slowly, so the guest
knows to resync and never sees half a frame. Buffers are taken with poll() and
notifications re-armed, which works with and without EVENT_IDX.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    BackendError,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from .errors import HostDeviceError
from .host import InputDevice
from .protocol import (
    CONFIG_SIZE,
    EV_SYN,
    EVENT,
    EVENT_SIZE,
    EVENTQ,
    QUEUE_SIZE,
    STATUS_TYPES,
    SYN_DROPPED,
    SYN_DROPPED_EVENT,
    SYN_REPORT,
    Event,
    config_space,
)

log = logging.getLogger(__name__)

#: Events waiting for guest buffers before the waiting frames become one SYN_DROPPED.
BACKLOG = 1024


class InputBackend(VhostUserBackend):
    name = "vhost-device-input"
    num_queues = 2
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ

    def __init__(self, device: InputDevice, backlog: int = BACKLOG) -> None:
        self.device = device
        self.backlog = backlog
        self.select = 0
        self.subsel = 0
        self._partial: list[Event] = []  # the frame being read from the device
        self._discarding = False  # the rest of an overlong frame goes, up to its SYN
        self._frames: deque[list[Event]] = deque()  # whole frames waiting for buffers
        self._waiting = 0  # events in _frames
        self._buffers: deque[DescriptorChain] = deque()
        self._worker: Worker | None = None
        self._eventq: Vring | None = None
        self.dropped = 0  # frames replaced by SYN_DROPPED, for tests and logs

    # -- config space ----------------------------------------------------------------

    def config_space(self) -> bytes:
        return config_space(self.device.description, self.select, self.subsel)

    def set_config(self, offset: int, data: bytes) -> None:
        """Only select (offset 0) and subsel (offset 1) are writable, alone or together;
        QEMU's vhost-user-input writes the whole space back, so the other bytes of a
        write inside the space are ignored (read-only), and one beyond it refused."""
        if offset < 0 or not data or offset + len(data) > CONFIG_SIZE:
            raise BackendError(f"config write of {len(data)} bytes at {offset}: outside")
        for i, byte in enumerate(data[: max(0, 2 - offset)], offset):
            if i == 0:
                self.select = byte
            else:
                self.subsel = byte

    # -- the device's fd -------------------------------------------------------------

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self._worker, self._eventq = workers[0], vrings[EVENTQ]
        workers[0].add_reader(self.device.fileno(), self._device_ready)

    def _device_ready(self) -> None:
        try:
            events = self.device.read()
        except HostDeviceError as exc:
            log.error("%s; no more events from it", exc)
            if self._worker is not None:
                self._worker.remove_reader(self.device.fileno())
            return
        for event in events:
            self._take(event)
        self._flush()

    def _take(self, event: Event) -> None:
        etype, code, _ = event
        if etype == EV_SYN and code == SYN_DROPPED:
            self._partial = []  # the host lost events: so does the guest, told the same
            self._queue_frame([SYN_DROPPED_EVENT])
            return
        if self._discarding:
            self._discarding = not (etype == EV_SYN and code == SYN_REPORT)
            return
        self._partial.append(event)
        if etype == EV_SYN and code == SYN_REPORT:
            frame, self._partial = self._partial, []
            self._queue_frame(frame)
        elif len(self._partial) > self.backlog:  # a frame that cannot fit, ever
            self._partial, self._discarding = [], True
            self._queue_frame([SYN_DROPPED_EVENT])

    def _queue_frame(self, frame: list[Event]) -> None:
        if self._waiting + len(frame) > self.backlog:
            self.dropped += len(self._frames)
            log.info("guest reads too slowly: %d frame(s) dropped", len(self._frames))
            self._frames.clear()
            self._frames.append([SYN_DROPPED_EVENT])
            self._waiting = 1
            if self._waiting + len(frame) > self.backlog:
                return
        self._frames.append(frame)
        self._waiting += len(frame)

    # -- the queues ------------------------------------------------------------------

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == EVENTQ:
            self._eventq = vring
            self._flush()
            return
        for batch in vring.batches():
            for chain in batch:
                self._status(chain)
            vring.complete(batch, [0] * len(batch))

    def _status(self, chain: DescriptorChain) -> None:
        data = chain.read(EVENT_SIZE)
        if len(data) < EVENT_SIZE:
            log.warning("statusq buffer %d has %d bytes, not an event", chain.head, len(data))
            return
        event = EVENT.unpack(data)
        if event[0] not in STATUS_TYPES:
            log.warning("statusq: event type %#x is not LED or sound; ignored", event[0])
            return
        try:
            self.device.write(event)
        except HostDeviceError as exc:
            log.warning("%s", exc)

    def _take_buffers(self, vring: Vring) -> None:
        for chain in vring.poll():
            if chain.writable_len < EVENT_SIZE:
                log.warning("eventq buffer %d cannot hold an event: returned", chain.head)
                vring.complete_one(chain.head, 0)
            else:
                self._buffers.append(chain)

    def _flush(self) -> None:
        """Complete every waiting frame the held buffers can take whole."""
        vring = self._eventq
        if vring is None or not vring.active:
            return
        self._take_buffers(vring)
        while True:
            while self._frames and len(self._buffers) >= len(self._frames[0]):
                frame = self._frames.popleft()
                self._waiting -= len(frame)
                for event in frame:
                    chain = self._buffers.popleft()
                    vring.complete_one(chain.head, chain.write(EVENT.pack(*event)))
            if not self._frames or not vring.enable_notification():
                return
            self._take_buffers(vring)  # buffers posted since poll(): no kick for them

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index == EVENTQ:  # held buffers go back empty (the driver skips them)
            while self._buffers:
                vring.complete_one(self._buffers.popleft().head, 0)

    def reset(self) -> None:
        self._buffers.clear()
        self._frames.clear()
        self._partial, self._waiting, self._discarding = [], 0, False
        self.select = self.subsel = 0

    def close(self) -> None:
        if self._worker is not None:
            try:
                self._worker.remove_reader(self.device.fileno())
            except (KeyError, ValueError, OSError):
                pass
            self._worker = None
