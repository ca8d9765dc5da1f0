"""The device: one queue; each request's device-writable buffers get a copy of its
device-readable bytes, and so does the host's sink. Replace `_serve` (and the class
attributes) with yours."""

from __future__ import annotations

import logging

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
)

from .errors import SinkError
from .host import Sink

log = logging.getLogger(__name__)


class LoopbackBackend(VhostUserBackend):
    name = "vhost-device-template"
    num_queues = 1
    max_queue_size = 1024
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ

    def __init__(self, sink: Sink) -> None:  # one backend per connection, one sink for all
        self.sink = sink

    def handle_queue(self, vring: Vring) -> None:
        # batches() runs the EVENT_IDX-safe loop; complete() interrupts the guest only
        # when it asked. A malformed chain has no buffers: read() is b"", write() is 0.
        for batch in vring.batches():
            vring.complete(batch, [self._serve(chain) for chain in batch])

    def _serve(self, chain: DescriptorChain) -> int:
        """One request; returns its used length (the bytes written for the guest)."""
        data = chain.read()
        try:
            self.sink.write(data)
        except SinkError as exc:  # the host fails this request, never the daemon
            log.warning("request %d failed: %s", chain.head, exc)
            return 0
        return chain.write(data)
