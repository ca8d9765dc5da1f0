"""The device: one request queue; each request is one SPI transfer (head, tx, rx,
result). A popped batch's valid transfers go to the controller as few SPI messages as
the kernel allows (one per run of the same mode, within spidev's size limit); a
request that fails its checks gets PARAM_ERR and never reaches the bus."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from vhost_user_core import (
    STANDARD_FEATURES,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
)

from . import spidev_ioctl
from .errors import TransferError
from .host import Controller, Transfer, width_bits
from .protocol import HEAD_SIZE, Result, TransferHead, head_problem

log = logging.getLogger(__name__)


@dataclass
class _Request:
    """A parsed chain: where its result goes and, if it is to run, its transfer."""

    chain: DescriptorChain
    rx_len: int  # the result byte's offset in the writable part
    result: Result = Result.TRANS_OK
    transfer: Transfer | None = None
    mode: int = 0
    rx: bytes = b""


class SpiBackend(VhostUserBackend):
    name = "vhost-device-spi"
    num_queues = 1
    max_queue_size = 1024
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ  # the core adds CONFIG, REPLY_ACK, ...

    def __init__(self, controller: Controller) -> None:  # one per connection
        self.controller = controller
        self.messages = 0  # SPI messages sent on this connection

    def config_space(self) -> bytes:
        return self.controller.config.encode()

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            requests = [self._parse(chain) for chain in batch]
            for group in self._messages(requests):
                self._run(group)
            vring.complete(batch, [self._answer(request) for request in requests])

    def _parse(self, chain: DescriptorChain) -> _Request | None:
        """None for a request that cannot even be answered (no writable result byte)."""
        if chain.error is not None or chain.writable_len == 0:
            log.warning("request %d dropped: %s", chain.head, chain.error or "no result buffer")
            return None
        request = _Request(chain, rx_len=chain.writable_len - 1)
        if chain.readable_len < HEAD_SIZE:
            log.warning("request %d: %d-byte transfer head", chain.head, chain.readable_len)
            request.result = Result.PARAM_ERR
            return request
        tx_len = chain.readable_len - HEAD_SIZE
        limit = self.controller.message_limit
        if tx_len > limit or request.rx_len > limit:
            log.warning("request %d: over the controller's %d-byte message", chain.head, limit)
            request.result = Result.TRANS_ERR
            return request
        data = chain.read(HEAD_SIZE + tx_len)
        head = TransferHead.decode(data[:HEAD_SIZE])
        problem = head_problem(head, self.controller.config, tx_len, request.rx_len)
        if problem is not None:
            log.info("request %d: PARAM_ERR: %s", chain.head, problem)
            request.result = Result.PARAM_ERR
            return request
        request.mode = head.mode
        request.transfer = Transfer(
            tx=data[HEAD_SIZE:] if tx_len else None,
            rx_len=request.rx_len,
            speed_hz=head.freq,
            bits_per_word=head.bits_per_word,
            cs_change=head.cs_change,
            tx_nbits=head.tx_nbits,
            rx_nbits=head.rx_nbits,
            delay_usecs=-(-head.cs_delay_hold_ns // 1000),  # rounded up: never shorter
        )
        return request

    def _messages(self, requests: list[_Request | None]) -> Iterator[list[_Request]]:
        """Runs of valid transfers that one SPI_IOC_MESSAGE can carry: the same mode
        (spidev's mode is per device, not per transfer), at most spidev's bytes in
        each direction and at most SPI_IOC_MESSAGE's transfer count."""
        limit = self.controller.message_limit
        group: list[_Request] = []
        key: tuple[int, int] | None = None
        tx_total = rx_total = 0
        for request in requests:
            if request is None or request.transfer is None:
                continue
            t = request.transfer
            tx, rx = (len(t.tx) if t.tx is not None else 0), t.rx_len
            this_key = (request.mode, width_bits(t))
            if group and (
                this_key != key
                or tx_total + tx > limit
                or rx_total + rx > limit
                or len(group) == spidev_ioctl.MAX_MESSAGE
            ):
                yield group
                group, tx_total, rx_total = [], 0, 0
            group.append(request)
            key, tx_total, rx_total = this_key, tx_total + tx, rx_total + rx
        if group:
            yield group

    def _run(self, group: list[_Request]) -> None:
        transfers = [request.transfer for request in group if request.transfer is not None]
        self.messages += 1
        try:
            received = self.controller.transfer(group[0].mode, transfers)
        except TransferError as exc:
            log.warning("SPI message of %d transfers failed: %s", len(group), exc)
            for request in group:
                request.result = Result.TRANS_ERR
            return
        for request, rx in zip(group, received, strict=True):
            request.rx = rx

    @staticmethod
    def _answer(request: _Request | None) -> int:
        """Write rx data (only for TRANS_OK) and the result; returns the used length."""
        if request is None:
            return 0
        if request.result is Result.TRANS_OK and request.rx:
            request.chain.write(request.rx)
        request.chain.write(bytes([request.result]), request.rx_len)
        return request.rx_len + 1
