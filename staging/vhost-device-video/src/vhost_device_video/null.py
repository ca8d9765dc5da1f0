"""The null backend, the shipped double: it accepts a stream of any coded format it
lists and turns every input buffer into one empty output frame (the guest's pages are
left as they are), so a driver can run a stream's whole life with no decoder.

Like a decoder it holds an input until an output buffer takes its frame, reports the
stream's resolution once its first input arrives, and ends a drain with an empty
EOS output.
"""

from __future__ import annotations

from collections import deque

from vhost_user_core import Worker

from .formats import coded_params, raw_params
from .host import MemoryRef, StreamEvents
from .protocol import (
    BufferFlag,
    CommandError,
    Control,
    Format,
    FormatDesc,
    FormatFrame,
    Level,
    Params,
    Profile,
    QueueType,
    Range,
    Resp,
)
from .resource import Resource

CODED = (Format.FWHT, Format.H264, Format.HEVC, Format.VP8, Format.VP9)
RAW = (Format.YUV420, Format.NV12)
WIDTH, HEIGHT = 640, 480
MAX_BUFFERS = 32
BITSTREAM_BUFFER = 1 << 20

CONTROLS: dict[Format, dict[Control, tuple[int, ...]]] = {
    Format.H264: {
        Control.PROFILE: (Profile.H264_BASELINE, Profile.H264_MAIN, Profile.H264_HIGH),
        Control.LEVEL: (Level.H264_4_0, Level.H264_3_0, Level.H264_4_1, Level.H264_5_1),
    },
    Format.HEVC: {Control.PROFILE: (Profile.HEVC_MAIN, Profile.HEVC_MAIN10)},
    Format.VP8: {Control.PROFILE: (Profile.VP8_PROFILE0,)},
    Format.VP9: {Control.PROFILE: (Profile.VP9_PROFILE0,)},
}


def _frames() -> tuple[FormatFrame, ...]:
    return (FormatFrame(Range(16, 4096, 16), Range(16, 2304, 16), (Range(1, 60, 1),)),)


class NullBackend:
    def capabilities(self, queue: QueueType) -> list[FormatDesc]:
        if queue == QueueType.INPUT:
            every_raw = (1 << len(RAW)) - 1
            return [FormatDesc(f, every_raw, frames=_frames()) for f in CODED]
        every_coded = (1 << len(CODED)) - 1
        return [FormatDesc(f, every_coded, plane_align=1, frames=_frames()) for f in RAW]

    def controls(self, fmt: Format) -> dict[Control, tuple[int, ...]]:
        return CONTROLS.get(fmt, {})

    def open_stream(
        self, coded_format: Format, events: StreamEvents, memory: MemoryRef, worker: Worker
    ) -> NullDecoder:
        return NullDecoder(coded_format, events)

    def close(self) -> None:
        pass


class NullDecoder:
    def __init__(self, coded_format: Format, events: StreamEvents) -> None:
        self.events = events
        self.input = coded_params(coded_format, WIDTH, HEIGHT, BITSTREAM_BUFFER, max_buffers=32)
        self.output = raw_params(Format.YUV420, WIDTH, HEIGHT, min_buffers=1, max_buffers=32)
        self.inputs: deque[tuple[int, int]] = deque()  # (resource id, timestamp)
        self.outputs: deque[int] = deque()
        self.draining = False
        self.seen_input = False

    def get_params(self, queue: QueueType) -> Params:
        return self.input if queue == QueueType.INPUT else self.output

    def set_params(self, params: Params) -> None:
        if params.queue_type == QueueType.INPUT:
            if params.format != self.input.format:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, "the stream's coded format is fixed")
            width, height = params.frame_width or WIDTH, params.frame_height or HEIGHT
            size = max(params.plane_formats[0].plane_size if params.plane_formats else 0, 4096)
            self.input = coded_params(params.format, width, height, size, max_buffers=MAX_BUFFERS)
            self.output = raw_params(
                self.output.format, width, height, min_buffers=1, max_buffers=MAX_BUFFERS
            )
            return
        if params.format not in RAW:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"{params.format.name} is not offered")
        # The decoder, not the driver, decides the frame size: only the format changes.
        o = self.output
        self.output = raw_params(
            params.format, o.frame_width, o.frame_height, min_buffers=1, max_buffers=MAX_BUFFERS
        )

    def queue(
        self, queue: QueueType, resource: Resource, timestamp: int, data_sizes: tuple[int, ...]
    ) -> None:
        if queue == QueueType.INPUT:
            self.inputs.append((resource.id, timestamp))
            if not self.seen_input:
                self.seen_input = True
                self.events.resolution_changed()
        else:
            self.outputs.append(resource.id)
        self._pump()

    def _pump(self) -> None:
        while self.inputs and self.outputs:
            rid, timestamp = self.inputs.popleft()
            self.events.done(QueueType.INPUT, rid, timestamp, BufferFlag(0))
            self.events.done(QueueType.OUTPUT, self.outputs.popleft(), timestamp, BufferFlag(0))
        if self.draining and not self.inputs and self.outputs:
            self.draining = False
            self.events.done(QueueType.OUTPUT, self.outputs.popleft(), 0, BufferFlag.EOS)

    def drain(self) -> None:
        self.draining = True
        self._pump()

    def clear(self, queue: QueueType) -> None:
        (self.inputs if queue == QueueType.INPUT else self.outputs).clear()
        self.draining = False

    def destroy_all(self, queue: QueueType) -> None:
        self.clear(queue)

    def close(self) -> None:
        self.inputs.clear()
        self.outputs.clear()
