"""The backend: requestq and eventq of one chip, per VMM connection."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from .host import Chip
from .irq import Interrupts
from .protocol import EVENTQ, F_IRQ, QUEUE_SIZE, REQUESTQ, config_space
from .requests import Requests

log = logging.getLogger(__name__)


class GpioBackend(VhostUserBackend):
    name = "vhost-device-gpio"
    num_queues = 2
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES | F_IRQ
    protocol_features = ProtocolFeature.MQ

    def __init__(self, chip: Chip) -> None:  # one backend per connection, one chip for all
        self.chip = chip
        self.interrupts = Interrupts(chip)
        self.requests = Requests(chip, self.interrupts)
        self._config = config_space(chip.num_lines, len(self.requests.names))

    def config_space(self) -> bytes:
        return self._config

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self.interrupts.attach(workers[0], vrings[EVENTQ])

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == REQUESTQ:
            for batch in vring.batches():
                vring.complete(batch, [self._serve(chain) for chain in batch])
        else:
            for batch in vring.batches():
                for chain in batch:
                    self.interrupts.post(chain)

    def _serve(self, chain: DescriptorChain) -> int:
        """One request; its used length (the response bytes written)."""
        answer = self.requests.answer(chain.read(), chain.writable_len)
        return chain.write(answer[: chain.writable_len]) if chain.writable_len else 0

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index == EVENTQ:
            self.interrupts.return_all()

    def reset(self) -> None:
        self.interrupts.release()
        self.chip.release_all()

    def close(self) -> None:
        self.interrupts.release()
        self.chip.release_all()
