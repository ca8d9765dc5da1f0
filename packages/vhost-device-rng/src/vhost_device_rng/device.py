"""The virtio-rng device (ID 4): one request queue of write-only buffers to fill."""

from __future__ import annotations

import logging

from vhost_user_core import (
    STANDARD_FEATURES,
    ChainBatch,
    FillFromFd,
    ProtocolFeature,
    TimerHandle,
    VhostUserBackend,
    Vring,
)

from .ratelimit import TokenBucket
from .source import EntropySource

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024


class RngBackend(VhostUserBackend):
    """Fills each request with entropy; honours a shared token bucket.

    Upstream sleeps on the worker thread when the quota is used up; here the ring is
    left alone and a timer on the worker resumes it when the next period starts.
    Without a rate limit, kicks are served in C (`FillFromFd`: the source read
    straight into the guest's buffers, no Python per request); a short read, the end
    of the file or a malformed request comes back here.
    """

    name = "vhost-device-rng"
    num_queues = 1
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ

    def __init__(self, source: EntropySource, bucket: TokenBucket) -> None:
        self.source = source
        self.bucket = bucket
        self._buffer = bytearray()
        self._resume: TimerHandle | None = None
        self._served = 0
        self._fast: dict[int, FillFromFd] = {}

    @property
    def bytes_served(self) -> int:
        """Bytes given to the guest, by either path."""
        return self._served + sum(fast.bytes_filled for fast in self._fast.values())

    def fast_path(self, vring: Vring) -> FillFromFd | None:
        if not self.bucket.unlimited or self.source.exhausted:
            return None
        if vring.index not in self._fast:
            self._fast[vring.index] = FillFromFd(self.source.fileno())
        return self._fast[vring.index]

    def handle_queue(self, vring: Vring) -> None:
        if self._resume is not None or self.source.exhausted:
            return  # a timer will come back to this ring, or there is nothing to give
        for batch in vring.batches():
            if not self._serve(vring, batch):
                break
        else:
            return
        if not self.source.exhausted:
            self._resume = vring.worker.call_later(
                self.bucket.wait_time(), lambda: self._resumed(vring)
            )

    def _resumed(self, vring: Vring) -> None:
        self._resume = None
        self.handle_queue(vring)

    def _serve(self, vring: Vring, batch: ChainBatch) -> bool:
        """Fill as much of `batch` as quota and source allow; False if they ran out.

        One source read serves the whole batch. Chains that get nothing are put back
        on the ring (`Vring.rewind`), to be served whole in a later period rather
        than answered empty, which would make the guest driver spin.
        """
        wanted = batch.writable_lengths()
        total = sum(wanted)
        got = 0
        granted = self.bucket.take(total)
        if granted:
            if len(self._buffer) < granted:
                self._buffer = bytearray(granted)
            got = self.source.read_into(memoryview(self._buffer)[:granted])
        lengths = wanted if got == total else _share(wanted, got)
        if 0 in lengths:
            for chain in batch:
                if chain.error:
                    log.warning("request %d rejected: %s", chain.head, chain.error)
        batch.scatter(self._buffer, lengths)
        unserved = len(wanted) - len(lengths)
        if unserved:
            vring.rewind(unserved)
        vring.complete(batch, lengths)
        self._served += got
        return unserved == 0

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()


def _share(wanted: list[int], budget: int) -> list[int]:
    """Give each chain, in order, what it asks for until `budget` runs out; chains left
    with nothing are dropped from the result (they go back on the ring)."""
    lengths = []
    for n in wanted:
        if budget <= 0:
            break
        take = min(n, budget)
        lengths.append(take)
        budget -= take
    return lengths
