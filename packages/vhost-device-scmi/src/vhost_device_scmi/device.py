"""The backend (one worker owns both queues, so a notification and a command never
race): cmdq (commands in, replies out) and eventq (buffers the device holds
until a notification fills one), per VMM connection."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from .protocol import CMDQ, EVENTQ, F_P2A_CHANNELS, QUEUE_SIZE
from .scmi import Platform
from .sensors import Sensor

log = logging.getLogger(__name__)

MAX_PENDING = 64  # notifications kept while the guest has no eventq buffer


class ScmiBackend(VhostUserBackend):
    name = "vhost-device-scmi"
    num_queues = 2
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES | F_P2A_CHANNELS
    protocol_features = ProtocolFeature.MQ

    def __init__(self, open_sensors: Callable[[], Sequence[Sensor]]) -> None:
        self.platform = Platform(open_sensors(), self._post)
        self._buffers: deque[DescriptorChain] = deque()
        self._pending: deque[bytes] = deque(maxlen=MAX_PENDING)
        self._eventq: Vring | None = None

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self.platform.attach(workers[0])
        self._eventq = vrings[EVENTQ]

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == CMDQ:
            for batch in vring.batches():
                vring.complete(batch, [self._serve(chain) for chain in batch])
            return
        for batch in vring.batches():
            for chain in batch:
                if chain.writable_len == 0 or chain.read():
                    log.warning("eventq buffer %d is not device-writable only: refused", chain.head)
                    vring.complete_one(chain.head, 0)
                    continue
                self._buffers.append(chain)
        self._flush()

    def _serve(self, chain: DescriptorChain) -> int:
        reply = self.platform.handle(chain.read(), chain.writable_len)
        if len(reply) > chain.writable_len:
            log.warning(
                "command %d: reply of %d bytes, room for %d",
                chain.head,
                len(reply),
                chain.writable_len,
            )
            reply = reply[: chain.writable_len]
        return chain.write(reply) if reply else 0

    def _post(self, message: bytes) -> None:
        if len(self._pending) == self._pending.maxlen:
            log.debug("eventq: no buffer for a while, oldest notification dropped")
        self._pending.append(message)
        self._flush()

    def _flush(self) -> None:
        vring = self._eventq
        if vring is None or not vring.ready:
            return
        while self._buffers and self._pending:
            chain = self._buffers.popleft()
            message = self._pending.popleft()
            if len(message) > chain.writable_len:
                log.warning("eventq buffer %d too small for a notification", chain.head)
                vring.complete_one(chain.head, 0)
                continue
            vring.complete_one(chain.head, chain.write(message))

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index == EVENTQ:
            self.platform.stop()
            self._buffers.clear()  # they die with the ring
            self._pending.clear()

    def reset(self) -> None:
        self.platform.reset()
        self._buffers.clear()
        self._pending.clear()

    def close(self) -> None:
        self.platform.reset()
        for sensor in self.platform.sensors:
            sensor.close()
