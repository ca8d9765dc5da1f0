"""One stream's state machine, per the draft's buffer lifecycle and its ordering rules;
apart from the wire format (`protocol`) and from the decoding (`host.Decoder`).

A resource is Created, Queued (the device holds its RESOURCE_QUEUE request) or
Dequeued (the request was answered). The stream keeps the held requests and answers
them when the decoder reports a resource `done`, in the order the decoder reports
them, which may differ from the order they were queued. It enforces what the draft
asks of a device: no input queued and no second drain while a drain runs; a cleared
queue's requests answered with BufferFlag.ERR before the clear itself; every held
request answered when the stream is destroyed. A drain's own request is answered
when its EOS output is, or when a clear or destroy ends it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from vhost_user_core import DescriptorChain, GuestMemory

from .host import Decoder
from .protocol import (
    HDR,
    RESOURCE_QUEUE_RESP,
    BufferFlag,
    CommandError,
    Control,
    EventType,
    Format,
    Params,
    QueueType,
    ResourceCreate,
    ResourceQueue,
    Resp,
    SetParams,
    StreamCreate,
    encode_header,
    encode_resource_queue,
)
from .resource import Resource

log = logging.getLogger(__name__)

MAX_RESOURCES = 32  # per queue; V4L2's VIDEO_MAX_FRAME
RESOURCE_QUEUE_RESP_SIZE = HDR.size + RESOURCE_QUEUE_RESP.size

#: How the stream answers a held request: its chain and the response bytes.
Reply = Callable[[DescriptorChain, bytes], None]
#: How the stream raises an event on the eventq.
Notify = Callable[[EventType, int], None]


@dataclass
class _Held:
    chain: DescriptorChain
    timestamp: int


class Stream:
    """One stream; also the `StreamEvents` its decoder reports to."""

    def __init__(self, create: StreamCreate, reply: Reply, notify: Notify) -> None:
        self.id = create.stream_id
        self.coded_format: Format = create.coded_format
        self.tag = create.tag
        self.decoder: Decoder | None = None  # set once the backend opened it
        self._reply, self._notify = reply, notify
        self.resources: dict[QueueType, dict[int, Resource]] = {q: {} for q in QueueType}
        self.held: dict[QueueType, dict[int, _Held]] = {q: {} for q in QueueType}
        self.drain_chain: DescriptorChain | None = None
        self.controls: dict[Control, int] = {}
        self.failed = False

    def _decoder(self) -> Decoder:
        if self.decoder is None or self.failed:
            raise CommandError(Resp.ERR_INVALID_OPERATION, f"stream {self.id} has failed")
        return self.decoder

    @property
    def draining(self) -> bool:
        return self.drain_chain is not None

    # -- commands --------------------------------------------------------------------

    def resource_create(self, cmd: ResourceCreate, memory: GuestMemory) -> None:
        table = self.resources[cmd.queue_type]
        if cmd.resource_id in table:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"resource {cmd.resource_id} exists")
        if len(table) >= MAX_RESOURCES:
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"over {MAX_RESOURCES} resources")
        for plane in cmd.planes:
            for entry in plane:
                if not memory.check_range(entry.addr, entry.length):
                    raise CommandError(
                        Resp.ERR_INVALID_PARAMETER,
                        f"entry {entry.addr:#x}+{entry.length:#x} is not guest memory",
                    )
        table[cmd.resource_id] = Resource(
            cmd.resource_id, cmd.queue_type, cmd.planes_layout, cmd.plane_offsets, cmd.planes
        )

    def resource_queue(self, cmd: ResourceQueue, chain: DescriptorChain) -> None:
        """Hold `chain` until the decoder is done with the resource (maybe at once)."""
        queue = cmd.queue_type
        resource = self.resources[queue].get(cmd.resource_id)
        if resource is None:
            raise CommandError(Resp.ERR_INVALID_RESOURCE_ID, f"no resource {cmd.resource_id}")
        if cmd.resource_id in self.held[queue]:
            raise CommandError(Resp.ERR_INVALID_OPERATION, f"{cmd.resource_id} is queued")
        if queue == QueueType.INPUT and self.draining:
            raise CommandError(Resp.ERR_INVALID_OPERATION, "the stream is draining")
        if chain.writable_len < RESOURCE_QUEUE_RESP_SIZE:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "no room for the response")
        if queue == QueueType.INPUT:
            if not cmd.data_sizes or cmd.data_sizes[0] == 0:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, "an input with no data")
            if cmd.data_sizes[0] > resource.capacity(0):
                raise CommandError(Resp.ERR_INVALID_PARAMETER, "data_sizes over the resource")
        decoder = self._decoder()
        self.held[queue][cmd.resource_id] = _Held(chain, cmd.timestamp)
        try:
            decoder.queue(queue, resource, cmd.timestamp, cmd.data_sizes)
        except CommandError:
            self.held[queue].pop(cmd.resource_id, None)
            raise

    def drain(self, chain: DescriptorChain) -> None:
        if self.draining:
            raise CommandError(Resp.ERR_INVALID_OPERATION, "the stream is draining already")
        decoder = self._decoder()
        self.drain_chain = chain
        decoder.drain()

    def clear(self, queue: QueueType) -> None:
        """Every held request of `queue` answered with ERR, before the clear's answer."""
        self._decoder().clear(queue)
        self._return_all(queue)
        self._end_drain()

    def destroy_all(self, queue: QueueType) -> None:
        """Queued resources come back first (with ERR), then all are forgotten."""
        decoder = self._decoder()
        if self.held[queue]:
            decoder.clear(queue)
            self._return_all(queue)
            self._end_drain()
        decoder.destroy_all(queue)
        self.resources[queue].clear()

    def get_params(self, queue: QueueType) -> Params:
        return self._decoder().get_params(queue)

    def set_params(self, cmd: SetParams) -> None:
        self._decoder().set_params(cmd.params)

    def destroy(self) -> None:
        """Answer everything held, then let the decoder go."""
        for queue in QueueType:
            self._return_all(queue)
        self._end_drain()
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None

    def abandon(self) -> None:
        """The connection or device is gone: close the decoder, answer nothing."""
        self.held = {q: {} for q in QueueType}
        self.drain_chain = None
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None

    def return_held(self) -> None:
        """The command queue stops: every held request answered (ERR) while it can be."""
        if self.decoder is not None and not self.failed:
            for queue in QueueType:
                if self.held[queue]:
                    self.decoder.clear(queue)
        for queue in QueueType:
            self._return_all(queue)
        self._end_drain()

    def _return_all(self, queue: QueueType) -> None:
        held, self.held[queue] = self.held[queue], {}
        for item in held.values():
            self._answer(item.chain, encode_resource_queue(self.id, item.timestamp, BufferFlag.ERR))

    def _end_drain(self) -> None:
        chain, self.drain_chain = self.drain_chain, None
        if chain is not None:
            self._answer(chain, encode_header(Resp.OK_NODATA, self.id))

    def _answer(self, chain: DescriptorChain, response: bytes) -> None:
        self._reply(chain, response)

    # -- StreamEvents ----------------------------------------------------------------

    def done(
        self, queue: QueueType, resource_id: int, timestamp: int, flags: BufferFlag, size: int = 0
    ) -> None:
        item = self.held[queue].pop(resource_id, None)
        if item is None:
            log.warning("stream %d: %s %d done but not queued", self.id, queue.name, resource_id)
            return
        self._answer(item.chain, encode_resource_queue(self.id, timestamp, flags, size))
        if flags & BufferFlag.EOS and queue == QueueType.OUTPUT:
            self._end_drain()

    def resolution_changed(self) -> None:
        self._notify(EventType.DECODER_RESOLUTION_CHANGED, self.id)

    def error(self, why: str) -> None:
        """The decoder cannot go on: the guest hears of it, held requests come back."""
        if self.failed:
            return
        log.warning("stream %d failed: %s", self.id, why)
        self.failed = True
        for queue in QueueType:
            self._return_all(queue)
        self._end_drain()
        self._notify(EventType.ERROR, self.id)
