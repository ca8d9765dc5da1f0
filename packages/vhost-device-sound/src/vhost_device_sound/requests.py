"""Control-queue requests: decode, check, act, answer (VIRTIO 1.3 §5.14.6).

Every request gets an answer, whatever it holds: BAD_MSG for a malformed or out-of-range
one, NOT_SUPP for an unknown code or a feature the device lacks, IO_ERR when the host
backend fails. (Upstream leaves an unknown code unanswered, so the guest waits for it.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from vhost_user_core import BackendError, ProtocolError

from .backends.base import AudioBackend
from .controls import ELEMENTS, MasterControls
from .errors import ControlValueError, InvalidTransition, RequestRefused
from .params import DEFAULT_POSITIONS, PcmParams
from .pcm_state import PcmState, next_state
from .protocol import (
    CHMAP_MAX_SIZE,
    SAMPLE_BYTES,
    ChmapInfo,
    Code,
    CtlInfo,
    Direction,
    Format,
    Header,
    ItemHeader,
    JackInfo,
    Message,
    PcmInfo,
    QueryInfo,
    Rate,
    SetParams,
    Status,
    ctl_values,
    encode_ctl_values,
)
from .stream_io import StreamIO

log = logging.getLogger(__name__)

#: Largest period and buffer a guest may ask for (Linux's driver stops at 240 KiB and
#: 480 KiB). A stream never holds more than its buffer in flight, so these also bound
#: what a guest can make the daemon keep.
MAX_PERIOD_BYTES = 1 << 20
MAX_BUFFER_BYTES = 4 << 20
#: Channel maps: one per direction, stereo (upstream stores two but advertises one).
CHMAPS = tuple(
    ChmapInfo(0, d, 2, bytes(DEFAULT_POSITIONS[2]).ljust(CHMAP_MAX_SIZE, b"\0")) for d in Direction
)


Answer = bytes  # the payload after the status header


class ControlRequests:
    def __init__(
        self,
        streams: Sequence[StreamIO],
        backend: AudioBackend,
        controls: MasterControls,
        controls_negotiated: Callable[[], bool],
    ) -> None:
        self.streams = streams
        self.backend = backend
        self.controls = controls
        self.controls_negotiated = controls_negotiated
        self._handlers: dict[Code, Callable[[bytes, int], Answer]] = {
            Code.JACK_INFO: self._jack_info,
            Code.JACK_REMAP: self._jack_remap,
            Code.PCM_INFO: self._pcm_info,
            Code.PCM_SET_PARAMS: self._pcm_set_params,
            Code.PCM_PREPARE: self._pcm_command,
            Code.PCM_START: self._pcm_command,
            Code.PCM_STOP: self._pcm_command,
            Code.PCM_RELEASE: self._pcm_command,
            Code.CHMAP_INFO: self._chmap_info,
            Code.CTL_INFO: self._ctl_info,
            Code.CTL_ENUM_ITEMS: self._ctl_enum_items,
            Code.CTL_READ: self._ctl_read,
            Code.CTL_WRITE: self._ctl_write,
        }

    def answer(self, request: bytes, room: int) -> bytes:
        """The whole response (status header, then payload if OK) to `request`, for a
        response buffer of `room` bytes."""
        try:
            code = Header.decode(request).code
            try:
                handler = self._handlers[Code(code)]
            except (ValueError, KeyError):
                raise RequestRefused(Status.NOT_SUPP, f"unsupported request {code:#x}") from None
            payload = handler(request, room)
            status = Status.OK
        except RequestRefused as exc:
            log.info("control request refused (%s): %s", exc.status.name, exc)
            status, payload = exc.status, b""
        except ProtocolError as exc:
            log.info("malformed control request: %s", exc)
            status, payload = Status.BAD_MSG, b""
        except BackendError as exc:
            log.error("audio backend failed: %s", exc)
            status, payload = Status.IO_ERR, b""
        return Header(status).encode() + payload

    # -- item queries -------------------------------------------------------------------

    def _query(self, request: bytes, room: int, items: Sequence[Message], kind: type) -> Answer:
        query = QueryInfo.decode(request)
        size = kind.FORMAT.size  # type: ignore[attr-defined]
        if query.start_id > len(items) or query.count > len(items) - query.start_id:
            raise RequestRefused(
                Status.BAD_MSG, f"items {query.start_id}+{query.count} of {len(items)}"
            )
        if query.size < size:
            raise RequestRefused(Status.BAD_MSG, f"item size {query.size} < {size}")
        if Header.FORMAT.size + query.count * query.size > room:
            raise RequestRefused(Status.BAD_MSG, f"no room for {query.count} items of {query.size}")
        chosen = items[query.start_id : query.start_id + query.count]
        return b"".join(item.encode().ljust(query.size, b"\0") for item in chosen)

    def _jack_info(self, request: bytes, room: int) -> Answer:
        return self._query(request, room, (), JackInfo)

    def _jack_remap(self, request: bytes, room: int) -> Answer:
        jack = ItemHeader.decode(request).item_id
        raise RequestRefused(Status.BAD_MSG, f"jack {jack} does not exist (the device has none)")

    def _pcm_info(self, request: bytes, room: int) -> Answer:
        infos = []
        for stream in self.streams:
            caps = self.backend.capabilities(stream.direction)
            infos.append(
                PcmInfo(
                    0,
                    0,
                    caps.format_mask,
                    caps.rate_mask,
                    stream.direction,
                    caps.channels_min,
                    caps.channels_max,
                )
            )
        return self._query(request, room, infos, PcmInfo)

    def _chmap_info(self, request: bytes, room: int) -> Answer:
        return self._query(request, room, CHMAPS, ChmapInfo)

    # -- PCM commands -------------------------------------------------------------------

    def _stream(self, stream_id: int) -> StreamIO:
        if not 0 <= stream_id < len(self.streams):
            raise RequestRefused(Status.BAD_MSG, f"stream {stream_id} does not exist")
        return self.streams[stream_id]

    def _transition(self, stream: StreamIO, command: Code) -> PcmState:
        try:
            return next_state(stream.state, command)
        except InvalidTransition as exc:
            raise RequestRefused(Status.BAD_MSG, f"stream {stream.stream_id}: {exc}") from None

    def _pcm_set_params(self, request: bytes, room: int) -> Answer:
        req = SetParams.decode(request)
        stream = self._stream(req.stream_id)
        target = self._transition(stream, Code.PCM_SET_PARAMS)
        params = self._checked_params(stream.direction, req)
        # Buffers held for the old parameters go back first (as on a second PREPARE):
        # under the new buffer_bytes they could be more than the stream may hold.
        stream.flush()
        stream.params = params
        stream.state = target
        return b""

    def _checked_params(self, direction: Direction, req: SetParams) -> PcmParams:
        caps = self.backend.capabilities(direction)
        if req.features:
            raise RequestRefused(Status.NOT_SUPP, f"PCM features {req.features:#x} not supported")
        try:
            fmt, rate = Format(req.format), Rate(req.rate)
        except ValueError:
            raise RequestRefused(
                Status.NOT_SUPP, f"format {req.format} / rate {req.rate}"
            ) from None
        if fmt not in caps.formats or fmt not in SAMPLE_BYTES:
            raise RequestRefused(Status.NOT_SUPP, f"format {fmt.name} not supported")
        if rate not in caps.rates:
            raise RequestRefused(Status.NOT_SUPP, f"rate {rate.hz} Hz not supported")
        if not caps.channels_min <= req.channels <= caps.channels_max:
            raise RequestRefused(Status.NOT_SUPP, f"{req.channels} channels not supported")
        frame = SAMPLE_BYTES[fmt] * req.channels
        if not 0 < req.period_bytes <= MAX_PERIOD_BYTES or req.period_bytes % frame:
            raise RequestRefused(Status.BAD_MSG, f"period of {req.period_bytes} bytes")
        if not req.period_bytes <= req.buffer_bytes <= MAX_BUFFER_BYTES:
            raise RequestRefused(Status.BAD_MSG, f"buffer of {req.buffer_bytes} bytes")
        return PcmParams(fmt, rate, req.channels, req.buffer_bytes, req.period_bytes)

    def _pcm_command(self, request: bytes, room: int) -> Answer:
        req = ItemHeader.decode(request)
        command = Code(req.code)
        stream = self._stream(req.item_id)
        target = self._transition(stream, command)
        action = {
            Code.PCM_PREPARE: stream.prepare,
            Code.PCM_START: stream.start,
            Code.PCM_STOP: stream.stop,
            Code.PCM_RELEASE: stream.release,
        }[command]
        stream.state = target  # set first, so the action sees the stream's new state
        try:
            action()
        except BackendError:
            if command is Code.PCM_PREPARE:
                stream.release()
                stream.state = PcmState.RELEASE
            raise
        return b""

    # -- control elements ---------------------------------------------------------------

    def _control(self, request: bytes) -> int:
        if not self.controls_negotiated():
            raise RequestRefused(Status.NOT_SUPP, "control elements were not negotiated")
        control_id = ItemHeader.decode(request).item_id
        if not 0 <= control_id < len(ELEMENTS):
            raise RequestRefused(Status.BAD_MSG, f"control {control_id} does not exist")
        return control_id

    def _ctl_info(self, request: bytes, room: int) -> Answer:
        if not self.controls_negotiated():
            raise RequestRefused(Status.NOT_SUPP, "control elements were not negotiated")
        return self._query(request, room, [e.info() for e in ELEMENTS], CtlInfo)

    def _ctl_enum_items(self, request: bytes, room: int) -> Answer:
        self._control(request)
        raise RequestRefused(Status.BAD_MSG, "no enumerated control elements")

    def _ctl_read(self, request: bytes, room: int) -> Answer:
        control_id = self._control(request)
        return encode_ctl_values([self.controls.read(control_id)])

    def _ctl_write(self, request: bytes, room: int) -> Answer:
        control_id = self._control(request)
        (value, *_) = ctl_values(request[ItemHeader.FORMAT.size :])
        try:
            changed = self.controls.write(control_id, value)
        except ControlValueError as exc:
            raise RequestRefused(Status.BAD_MSG, str(exc)) from None
        if changed:
            self.backend.set_volume(Direction.OUTPUT, self.controls.gain, self.controls.muted)
        return b""
