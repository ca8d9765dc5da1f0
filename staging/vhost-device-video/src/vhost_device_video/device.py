"""The backend: the command queue's requests, answered at once or held by their
stream, and the event queue's buffers, filled with the events streams raise.

One worker owns both queues, the streams and any decoder fd (in its epoll), so a
held request is answered on the thread that holds it. Every request is decoded by
`protocol` before anything acts on it; a malformed one gets the draft's error code
and the daemon goes on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    BackendError,
    DescriptorChain,
    GuestMemory,
    GuestMemoryError,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from .host import Backend, MemoryRef
from .protocol import (
    COMMANDQ,
    EVENT,
    EVENTQ,
    F_RESOURCE_GUEST_PAGES,
    GET_PARAMS_RESP_SIZE,
    HDR,
    MAX_COMMAND_SIZE,
    MAX_FORMAT_DESCS,
    PARAMS_EXT_TAIL,
    QUEUE_SIZE,
    Command,
    CommandError,
    Config,
    Control,
    EventType,
    Format,
    GetControl,
    GetParams,
    MemType,
    QueryCapability,
    QueryControl,
    QueueClear,
    QueueType,
    ResourceCreate,
    ResourceDestroyAll,
    ResourceQueue,
    Resp,
    SetControl,
    SetParams,
    StreamCreate,
    StreamDestroy,
    StreamDrain,
    decode_command,
    encode_capability,
    encode_control,
    encode_error,
    encode_header,
    encode_params,
    encode_query_control,
    peek_header,
)
from .stream import RESOURCE_QUEUE_RESP_SIZE, Stream

log = logging.getLogger(__name__)

MAX_STREAMS = 16
PENDING_EVENTS = 64  # events kept for eventq buffers; older ones are dropped past this


class VideoBackend(VhostUserBackend):
    name = "vhost-device-video"
    num_queues = 2
    max_queue_size = QUEUE_SIZE
    features = STANDARD_FEATURES | F_RESOURCE_GUEST_PAGES
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.CONFIG

    def __init__(self, host: Backend) -> None:  # one per connection, one host for all
        self.host = host
        self.memory = MemoryRef()
        self.streams: dict[int, Stream] = {}
        self._events: deque[tuple[EventType, int]] = deque()
        self._worker: Worker | None = None
        self._cmdq: Vring | None = None
        self._eventq: Vring | None = None
        self.config = self._config()

    def _config(self) -> Config:
        caps = max(len(encode_capability(self.host.capabilities(q))) for q in QueueType)
        longest = max((len(v) for f in Format for v in self.host.controls(f).values()), default=0)
        controls = len(encode_query_control([0] * longest))
        params = GET_PARAMS_RESP_SIZE + PARAMS_EXT_TAIL.size
        return Config(caps, max(params, RESOURCE_QUEUE_RESP_SIZE, controls))

    def config_space(self) -> bytes:
        return self.config.encode()

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self._worker = workers[0]
        self._cmdq, self._eventq = vrings[COMMANDQ], vrings[EVENTQ]

    def memory_changed(self, memory: GuestMemory) -> None:
        self.memory.memory = memory

    def queue_stopped(self, vring: Vring) -> None:
        if vring.index == COMMANDQ:
            for stream in self.streams.values():
                stream.return_held()

    def reset(self) -> None:
        self._drop_streams()
        self._events.clear()

    def close(self) -> None:
        self._drop_streams()

    def _drop_streams(self) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.abandon()

    # -- the command queue -----------------------------------------------------------

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == EVENTQ:
            self._deliver()
            return
        for batch in vring.batches():
            for chain in batch:
                self._serve(chain)

    def _serve(self, chain: DescriptorChain) -> None:
        if chain.error is not None:
            log.warning("command %d malformed: %s", chain.head, chain.error)
            self._complete(chain, 0)
            return
        data = chain.read(MAX_COMMAND_SIZE + 1)
        header = peek_header(data)
        stream_id = header[1] if header is not None else 0
        try:
            if len(data) > MAX_COMMAND_SIZE:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, "request over the largest one")
            response = self._execute(decode_command(data), chain)
        except CommandError as exc:
            log.info("command %d (stream %d) refused: %s", chain.head, stream_id, exc)
            response = encode_error(exc.code, stream_id)
        except GuestMemoryError as exc:
            log.warning("command %d: %s", chain.head, exc)
            response = encode_error(Resp.ERR_INVALID_PARAMETER, stream_id)
        except BackendError as exc:
            log.warning("command %d (stream %d): host failed: %s", chain.head, stream_id, exc)
            response = encode_error(Resp.ERR_INVALID_OPERATION, stream_id)
        if response is not None:
            self.reply(chain, response)

    def reply(self, chain: DescriptorChain, response: bytes) -> None:
        """Answer one request (now, or later for one a stream held)."""
        if chain.writable_len < len(response):
            log.warning(
                "command %d: %d bytes of room for a %d-byte response",
                chain.head,
                chain.writable_len,
                len(response),
            )
            stream_id = HDR.unpack_from(response)[1]
            response = encode_error(Resp.ERR_INVALID_PARAMETER, stream_id)
            if chain.writable_len < len(response):
                response = b""
        self._complete(chain, chain.write(response) if response else 0)

    def _complete(self, chain: DescriptorChain, length: int) -> None:
        assert self._cmdq is not None
        self._cmdq.complete_one(chain.head, length)

    def _stream(self, stream_id: int) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise CommandError(Resp.ERR_INVALID_STREAM_ID, f"no stream {stream_id}")
        return stream

    def _execute(self, cmd: Command, chain: DescriptorChain) -> bytes | None:
        """The response, or None if a stream holds the request to answer it later."""
        ok = encode_header(Resp.OK_NODATA, getattr(cmd, "stream_id", 0))
        match cmd:
            case QueryCapability():
                descs = self.host.capabilities(cmd.queue_type)[:MAX_FORMAT_DESCS]
                return encode_capability(descs)
            case StreamCreate():
                self._create(cmd)
                return ok
            case StreamDestroy():
                self._stream(cmd.stream_id).destroy()
                del self.streams[cmd.stream_id]
                return ok
            case StreamDrain():
                self._stream(cmd.stream_id).drain(chain)
                return None
            case ResourceCreate():
                self._stream(cmd.stream_id).resource_create(cmd, self.memory.get())
                return ok
            case ResourceQueue():
                self._stream(cmd.stream_id).resource_queue(cmd, chain)
                return None
            case ResourceDestroyAll():
                self._stream(cmd.stream_id).destroy_all(cmd.queue_type)
                return ok
            case QueueClear():
                self._stream(cmd.stream_id).clear(cmd.queue_type)
                return ok
            case GetParams():
                params = self._stream(cmd.stream_id).get_params(cmd.queue_type)
                return encode_params(cmd.stream_id, params, cmd.ext)
            case SetParams():
                self._stream(cmd.stream_id).set_params(cmd)
                return ok
            case QueryControl():
                try:
                    fmt = Format(cmd.argument)
                except ValueError:
                    raise CommandError(
                        Resp.ERR_INVALID_PARAMETER, f"format {cmd.argument:#x} is unknown"
                    ) from None
                return encode_query_control(list(self._supported(fmt, cmd.control)))
            case GetControl():
                stream = self._stream(cmd.stream_id)
                values = self._supported(stream.coded_format, cmd.control)
                return encode_control(cmd.stream_id, stream.controls.get(cmd.control, values[0]))
            case SetControl():
                stream = self._stream(cmd.stream_id)
                if cmd.value not in self._supported(stream.coded_format, cmd.control):
                    raise CommandError(Resp.ERR_INVALID_PARAMETER, f"{cmd.value:#x} unsupported")
                stream.controls[cmd.control] = cmd.value
                return ok
        raise AssertionError(cmd)  # pragma: no cover - every command is matched

    def _supported(self, fmt: Format, control: Control) -> tuple[int, ...]:
        values = self.host.controls(fmt).get(control)
        if not values:
            raise CommandError(Resp.ERR_UNSUPPORTED_CONTROL, f"no {control.name} for {fmt.name}")
        return tuple(values)

    def _create(self, cmd: StreamCreate) -> None:
        if cmd.stream_id in self.streams:
            raise CommandError(Resp.ERR_INVALID_STREAM_ID, f"stream {cmd.stream_id} exists")
        if MemType.GUEST_PAGES not in (cmd.in_mem_type, cmd.out_mem_type) or (
            cmd.in_mem_type != cmd.out_mem_type
        ):
            raise CommandError(Resp.ERR_INVALID_PARAMETER, "only guest pages are offered")
        if cmd.coded_format not in {d.format for d in self.host.capabilities(QueueType.INPUT)}:
            raise CommandError(
                Resp.ERR_INVALID_PARAMETER, f"{cmd.coded_format.name} is not decoded here"
            )
        if len(self.streams) >= MAX_STREAMS:
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, f"{MAX_STREAMS} streams already")
        assert self._worker is not None
        stream = Stream(cmd, self.reply, self.notify)
        try:
            stream.decoder = self.host.open_stream(
                cmd.coded_format, stream, self.memory, self._worker
            )
        except BackendError as exc:
            log.warning("stream %d: the host cannot open one: %s", cmd.stream_id, exc)
            raise CommandError(Resp.ERR_OUT_OF_MEMORY, str(exc)) from exc
        self.streams[cmd.stream_id] = stream
        log.info("stream %d: %s %r", cmd.stream_id, cmd.coded_format.name, cmd.tag)

    # -- the event queue -------------------------------------------------------------

    def notify(self, event: EventType, stream_id: int) -> None:
        if len(self._events) >= PENDING_EVENTS:
            dropped = self._events.popleft()
            log.warning("eventq full: event %s of stream %d dropped", dropped[0].name, dropped[1])
        self._events.append((event, stream_id))
        self._deliver()

    def _deliver(self) -> None:
        eventq = self._eventq
        while self._events and eventq is not None:
            batch = eventq.poll(len(self._events))
            if not batch:
                if eventq.active and eventq.enable_notification():
                    continue
                break
            lengths = []
            for chain in batch:
                if not self._events:
                    break
                if chain.writable_len < EVENT.size:
                    log.warning("event buffer %d: %d bytes", chain.head, chain.writable_len)
                    lengths.append(0)
                    continue
                event, stream_id = self._events.popleft()
                lengths.append(chain.write(EVENT.pack(event, stream_id)))
            if len(lengths) < len(batch):
                eventq.rewind(len(batch) - len(lengths))  # kept for the next events
            eventq.complete(batch, lengths)
