"""The backend: txq, rxq and ctrlq of one guest's CAN controller on one host bus.

One worker owns the three queues and the bus's fd, so the controller state, the
frames waiting for rx buffers and the guest's requests never race. Frames wait in a
small queue for rx buffers; when it is full the bus fd is unwatched, so the kernel's
socket buffer (or the virtual bus's queue) holds the rest instead of our memory.
"""

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

from .errors import BusError
from .host import Bus
from .protocol import (
    F_CAN_CLASSIC,
    F_CAN_FD,
    F_RTR_FRAMES,
    HEADER_SIZE,
    QUEUE_SIZE,
    RXQ,
    SET_CTRL_MODE_START,
    SET_CTRL_MODE_STOP,
    STATUS_BUSOFF,
    TXQ,
    Frame,
    FrameError,
    Result,
    check_frame,
    config_space,
    decode_tx,
    encode_rx,
)

log = logging.getLogger(__name__)

PENDING_LIMIT = QUEUE_SIZE  # received frames held for rx buffers before the bus waits


class CanBackend(VhostUserBackend):
    name = "vhost-device-can"
    num_queues = 3
    max_queue_size = QUEUE_SIZE
    protocol_features = ProtocolFeature.MQ

    def __init__(self, bus: Bus) -> None:  # one backend per connection, one bus per socket
        self.bus = bus
        self.features = (
            STANDARD_FEATURES | F_CAN_CLASSIC | F_RTR_FRAMES | (F_CAN_FD if bus.fd_capable else 0)
        )
        self.negotiated = 0
        self.started = False
        self.status = 0
        self._pending: deque[Frame] = deque()
        self._worker: Worker | None = None
        self._rxq: Vring | None = None
        self._watching = False

    # -- the controller ----------------------------------------------------------------

    def config_space(self) -> bytes:
        return config_space(self.status)

    def acked_features(self, features: int) -> None:
        self.negotiated = features

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self._worker, self._rxq = workers[0], vrings[RXQ]
        self._watch(True)

    def _watch(self, on: bool) -> None:
        if self._worker is None or on == self._watching:
            return
        if on:
            self._worker.add_reader(self.bus.fileno(), self._bus_readable)
        else:
            self._worker.remove_reader(self.bus.fileno())
        self._watching = on

    def reset(self) -> None:
        self.started, self.status, self.negotiated = False, 0, 0
        self._pending.clear()
        self._watch(True)

    def close(self) -> None:
        self._watch(False)
        self._pending.clear()

    # -- queues ------------------------------------------------------------------------

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == RXQ:
            self._deliver()
            return
        serve = self._transmit if vring.index == TXQ else self._control
        for batch in vring.batches():
            vring.complete(batch, [self._answer(chain, serve) for chain in batch])

    @staticmethod
    def _answer(chain: DescriptorChain, serve: Callable[[DescriptorChain], Result]) -> int:
        """Run `serve` on the request; its one-byte result, if the chain has room."""
        result = serve(chain)
        if chain.writable_len < 1:
            log.warning("request %d has no room for its result", chain.head)
            return 0
        return chain.write(bytes([result]))

    def _transmit(self, chain: DescriptorChain) -> Result:
        if chain.error is not None or chain.readable_len > HEADER_SIZE + 64:
            log.warning("TX %d refused: %s", chain.head, chain.error or "oversized")
            return Result.NOT_OK
        try:
            frame = decode_tx(chain.read(), self.negotiated)
        except FrameError as exc:
            log.warning("TX %d refused: %s", chain.head, exc)
            return Result.NOT_OK
        if not self.started:
            log.warning("TX %d refused: the controller is stopped", chain.head)
            return Result.NOT_OK
        try:
            self.bus.send(frame)
        except BusError as exc:  # as upstream: a failed send takes the controller off the bus
            log.warning("TX %d failed, controller BUSOFF: %s", chain.head, exc)
            self.status |= STATUS_BUSOFF
            self.started = False
            return Result.NOT_OK
        return Result.OK

    def _control(self, chain: DescriptorChain) -> Result:
        request = chain.read(3)
        if chain.error is not None or len(request) != 2:
            log.warning("control %d malformed", chain.head)
            return Result.NOT_OK
        msg_type = int.from_bytes(request, "little")
        if msg_type == SET_CTRL_MODE_START:
            self.started, self.status = True, self.status & ~STATUS_BUSOFF
        elif msg_type == SET_CTRL_MODE_STOP:
            self.started = False
            self._pending.clear()
        else:
            log.warning("control %d: unknown message %#06x", chain.head, msg_type)
            return Result.NOT_OK
        log.info("controller %s", "started" if self.started else "stopped")
        return Result.OK

    # -- receiving ---------------------------------------------------------------------

    def _bus_readable(self) -> None:
        while len(self._pending) < PENDING_LIMIT:
            frame = self.bus.receive()
            if frame is None:
                break
            if not self.started:
                continue  # a stopped controller drops what it hears, as upstream
            try:
                check_frame(frame, self.negotiated)
            except FrameError as exc:
                log.debug("RX frame %#x dropped: %s", frame.can_id, exc)
                continue
            self._pending.append(frame)
        self._deliver()

    def _deliver(self) -> None:
        rxq = self._rxq
        while self._pending and rxq is not None:
            batch = rxq.poll(len(self._pending))
            if not batch:
                if rxq.active and rxq.enable_notification():
                    continue
                break
            rxq.complete(batch, [self._fill(chain) for chain in batch])
        self._watch(len(self._pending) < PENDING_LIMIT)

    def _fill(self, chain: DescriptorChain) -> int:
        message = encode_rx(self._pending[0])
        if chain.writable_len < len(message):
            log.warning("rx buffer %d of %d bytes too small", chain.head, chain.writable_len)
            return 0
        self._pending.popleft()
        return chain.write(message)
