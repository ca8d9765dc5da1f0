"""The device: one queue; each request's device-writable buffers get a copy of its
device-readable bytes. Replace `handle_queue` (and the class attributes) with yours."""

from __future__ import annotations

from vhost_user_core import VhostUserBackend
from vhost_user_core.protocol import STANDARD_FEATURES, ProtocolFeature
from vhost_user_core.vring import Vring


class LoopbackBackend(VhostUserBackend):
    name = "vhost-device-template"
    num_queues = 1
    max_queue_size = 1024
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ

    def handle_queue(self, vring: Vring) -> None:
        # batches() runs the EVENT_IDX-safe loop; complete() interrupts the guest only
        # when it asked. A malformed chain has no buffers: read() is b"", write() is 0.
        for batch in vring.batches():
            vring.complete(batch, [chain.write(chain.read()) for chain in batch])
