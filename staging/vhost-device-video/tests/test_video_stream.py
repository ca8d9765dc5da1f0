"""The stream state machine on its own (no daemon), for what the null decoder never
does: a decoder that fails, a `done` for a resource not queued, and the eventq's
bound. The chains are stand-ins: the stream only looks at their writable room."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from vhost_device_video.device import PENDING_EVENTS, VideoBackend
from vhost_device_video.null import NullBackend, NullDecoder
from vhost_device_video.protocol import (
    BufferFlag,
    CommandError,
    EventType,
    Format,
    MemEntry,
    MemType,
    PlanesLayout,
    QueueType,
    ResourceCreate,
    ResourceQueue,
    Resp,
    StreamCreate,
    decode_command,
)
from vhost_device_video.stream import Stream
from vhost_user_core import GuestMemory


@dataclass(frozen=True)
class Chain:
    head: int
    writable_len: int = 64


@dataclass
class Recorder:
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    events: list[tuple[EventType, int]] = field(default_factory=list)

    def reply(self, chain: Chain, response: bytes) -> None:
        self.answers.append((chain.head, response))

    def notify(self, event: EventType, stream_id: int) -> None:
        self.events.append((event, stream_id))


@pytest.fixture
def memory() -> GuestMemory:
    fd = os.memfd_create("stream-test")
    os.ftruncate(fd, 1 << 20)
    mem = GuestMemory()
    mem.add_region(0, 1 << 20, 0x7F0000000000, 0, fd)
    os.close(fd)
    return mem


def _stream(recorder: Recorder, memory: GuestMemory) -> Stream:
    create = StreamCreate(1, MemType.GUEST_PAGES, MemType.GUEST_PAGES, Format.FWHT, "t")
    stream = Stream(create, recorder.reply, recorder.notify)  # type: ignore[arg-type]
    stream.decoder = NullDecoder(Format.FWHT, stream)
    for queue in QueueType:
        entry = (MemEntry(0x1000 if queue == QueueType.INPUT else 0x10000, 0x8000),)
        cmd = ResourceCreate(1, queue, 1, PlanesLayout.SINGLE_BUFFER, (0,), (entry,))
        stream.resource_create(cmd, memory)
    return stream


def test_a_failed_decoder_returns_what_it_held_and_raises_an_error_event(
    memory: GuestMemory,
) -> None:
    recorder = Recorder()
    stream = _stream(recorder, memory)
    stream.resource_queue(ResourceQueue(1, QueueType.INPUT, 1, 5, (8,)), Chain(10))  # type: ignore[arg-type]
    stream.drain(Chain(11))  # type: ignore[arg-type]
    stream.error("the device went away")
    (input_answer, drain_answer) = recorder.answers
    assert input_answer[0] == 10
    assert int.from_bytes(input_answer[1][16:20], "little") == BufferFlag.ERR
    assert drain_answer == (11, Resp.OK_NODATA.to_bytes(4, "little") + (1).to_bytes(4, "little"))
    assert recorder.events == [
        (EventType.DECODER_RESOLUTION_CHANGED, 1),
        (EventType.ERROR, 1),
    ]
    with pytest.raises(CommandError) as err:
        stream.resource_queue(ResourceQueue(1, QueueType.OUTPUT, 1, 0, ()), Chain(12))  # type: ignore[arg-type]
    assert err.value.code == Resp.ERR_INVALID_OPERATION
    stream.destroy()  # still possible, and answers nothing twice
    assert len(recorder.answers) == 2


def test_done_for_a_resource_not_queued_is_ignored(memory: GuestMemory) -> None:
    recorder = Recorder()
    stream = _stream(recorder, memory)
    stream.done(QueueType.OUTPUT, 1, 0, BufferFlag(0))
    assert recorder.answers == []


def test_the_eventq_keeps_the_newest_events_when_no_buffer_comes() -> None:
    backend = VideoBackend(NullBackend())
    for stream_id in range(PENDING_EVENTS + 6):
        backend.notify(EventType.DECODER_RESOLUTION_CHANGED, stream_id)
    kept = list(backend._events)
    assert len(kept) == PENDING_EVENTS
    assert kept[0] == (EventType.DECODER_RESOLUTION_CHANGED, 6)


def test_decode_command_is_total_on_short_inputs() -> None:
    """Every prefix of a valid request decodes or raises CommandError, nothing else."""
    from video_driver import resource_create

    request = resource_create(1, QueueType.INPUT, 1, [(0x1000, 64), (0x2000, 64)])
    for cut in range(len(request)):
        try:
            decode_command(request[:cut])
        except CommandError:
            pass
