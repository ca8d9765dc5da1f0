"""The device: one request queue. Requests the driver chained with FAIL_NEXT (one
i2c_transfer() in the guest) go to their bus as one combined transfer; every request
gets its own status, and a malformed one fails alone."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
)

from .errors import TransferError
from .host import BusMap
from .requests import (
    VIRTIO_I2C_F_ZERO_LENGTH_REQUEST,
    VIRTIO_I2C_MSG_ERR,
    VIRTIO_I2C_MSG_OK,
    Malformed,
    Request,
    parse,
)

log = logging.getLogger(__name__)

Pending = tuple[DescriptorChain, Request]


class I2cBackend(VhostUserBackend):
    name = "vhost-device-i2c"
    num_queues = 1
    max_queue_size = 1024
    features = STANDARD_FEATURES | VIRTIO_I2C_F_ZERO_LENGTH_REQUEST
    protocol_features = ProtocolFeature.MQ

    def __init__(self, buses: BusMap) -> None:  # one backend per connection, buses shared
        self.buses = buses
        #: The start of a FAIL_NEXT group whose last request has not been posted yet.
        self.held: list[Pending] = []

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            for chain in batch:
                request = parse(chain)
                if isinstance(request, Malformed):
                    self._flush(vring)  # a group ends at a request that is not one
                    log.warning("request %d: %s", request.head, request.why)
                    self._finish(vring, chain, VIRTIO_I2C_MSG_ERR, 0, request.status_room)
                    continue
                self.held.append((chain, request))
                if not request.fail_next:
                    self._flush(vring)

    def queue_stopped(self, vring: Vring) -> None:
        for chain, _ in self.held:  # the rest of their group will never come
            self._finish(vring, chain, VIRTIO_I2C_MSG_ERR, 0, True)
        self.held = []

    def reset(self) -> None:
        self.held = []

    def _flush(self, vring: Vring) -> None:
        """Send the held group as one transfer, and answer all of its requests at once:
        every status written, then every request returned, then one interrupt. Linux's
        driver, once it sees a failed request, frees the whole group's requests without
        waiting for the rest, so a status or a completion that came after that would
        land in freed guest memory (a guest kernel Oops, seen in the tests)."""
        group, self.held = self.held, []
        if not group:
            return
        results = self._transfer([request for _, request in group])
        answered = []
        for (chain, request), data in zip(group, results, strict=True):
            if data is None:
                status, written = VIRTIO_I2C_MSG_ERR, 0
            else:
                status = VIRTIO_I2C_MSG_OK
                written = chain.write(data) if request.message.read else 0
            _put_status(chain, status)
            answered.append((chain.head, written + 1))
        # One interrupt for the group, after all of it is in the used ring: the driver
        # frees the transfer when its waiter wakes, so no request may come back later.
        for head, used in answered:
            vring.complete_one(head, used, notify=False)
        vring.signal_used()

    def _transfer(self, group: Sequence[Request]) -> list[bytes | None]:
        """Each request's read data (b"" for a write), or None where it failed."""
        failed: list[bytes | None] = [None] * len(group)
        buses = {id(self.buses.by_addr.get(r.message.addr)) for r in group}
        bus = self.buses.by_addr.get(group[0].message.addr)
        if bus is None or len(buses) != 1:
            unlisted = [r.message.addr for r in group if r.message.addr not in self.buses.by_addr]
            why = f"address {unlisted[0]:#04x} is not listed" if unlisted else "spans buses"
            log.debug("transfer of %d request(s) failed: %s", len(group), why)
            return failed
        try:
            return list(bus.transfer([r.message for r in group]))
        except TransferError as exc:
            log.debug("transfer of %d request(s) failed: %s", len(group), exc)
            return failed

    @staticmethod
    def _finish(vring: Vring, chain: DescriptorChain, status: int, data: int, room: bool) -> None:
        """Write the status as the last device-writable byte and return the chain."""
        if room:
            _put_status(chain, status)
        vring.complete_one(chain.head, data + 1 if room else 0)


def _put_status(chain: DescriptorChain, status: int) -> None:
    """The status is a request's last device-writable byte (virtio 1.2 §5.19.6)."""
    chain.write(bytes([status]), chain.writable_len - 1)
