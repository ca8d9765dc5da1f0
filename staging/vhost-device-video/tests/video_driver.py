"""The virtio-video v3 draft's driver side for frontend tests: no Linux driver for the
draft is in the guest kernel (the one that exists is out of tree), so the tests play
it. A command is one device-readable buffer and one device-writable buffer; answers
may come late and out of order, so every used entry is kept by its head."""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

from vhost_device_video.protocol import (
    CAP_RESP,
    COMMANDQ,
    CONFIG,
    CONTROL_ARG,
    EVENT,
    EVENTQ,
    FORMAT_DESC,
    FORMAT_FRAME_TAIL,
    FORMAT_RANGE,
    HDR,
    MAX_PLANES,
    MEM_ENTRY,
    PARAMS,
    QUERY_CONTROL_RESP,
    QUEUE_ARG,
    RESOURCE_CREATE,
    RESOURCE_QUEUE,
    RESOURCE_QUEUE_RESP,
    STREAM_CREATE,
    Cmd,
    Format,
    MemType,
    Params,
    PlanesLayout,
)
from vhost_user_core.frontend import Frontend

ROOM = 4096  # the response buffer a command gets unless a test says otherwise


def hdr(cmd: int, stream_id: int = 0) -> bytes:
    return HDR.pack(cmd, stream_id)


def query_capability(queue: int) -> bytes:
    return hdr(Cmd.QUERY_CAPABILITY) + QUEUE_ARG.pack(queue)


def stream_create(
    stream_id: int,
    fmt: int = Format.FWHT,
    tag: bytes = b"test",
    in_mem: int = MemType.GUEST_PAGES,
    out_mem: int = MemType.GUEST_PAGES,
) -> bytes:
    return hdr(Cmd.STREAM_CREATE, stream_id) + STREAM_CREATE.pack(in_mem, out_mem, fmt, tag)


def queue_command(cmd: int, stream_id: int, queue: int) -> bytes:
    return hdr(cmd, stream_id) + QUEUE_ARG.pack(queue)


def resource_create(
    stream_id: int,
    queue: int,
    resource_id: int,
    entries: Sequence[tuple[int, int]],
    *,
    layout: int = PlanesLayout.SINGLE_BUFFER,
    num_planes: int = 1,
    offsets: Sequence[int] = (),
    counts: Sequence[int] | None = None,
) -> bytes:
    offs = [*offsets, *[0] * MAX_PLANES][:MAX_PLANES]
    cnt = [*(counts if counts is not None else [len(entries)]), *[0] * MAX_PLANES][:MAX_PLANES]
    body = RESOURCE_CREATE.pack(queue, resource_id, layout, num_planes, *offs, *cnt)
    return (
        hdr(Cmd.RESOURCE_CREATE, stream_id)
        + body
        + b"".join(MEM_ENTRY.pack(addr, length) for addr, length in entries)
    )


def resource_queue(
    stream_id: int, queue: int, resource_id: int, timestamp: int = 0, sizes: Sequence[int] = ()
) -> bytes:
    data = [*sizes, *[0] * MAX_PLANES][:MAX_PLANES]
    body = RESOURCE_QUEUE.pack(queue, resource_id, timestamp, len(sizes), *data)
    return hdr(Cmd.RESOURCE_QUEUE, stream_id) + body


def set_params(stream_id: int, params: Params) -> bytes:
    return hdr(Cmd.SET_PARAMS, stream_id) + params.encode()


def control(cmd: int, stream_id: int, ctrl: int, arg: int | None = None) -> bytes:
    out = hdr(cmd, stream_id) + CONTROL_ARG.pack(ctrl)
    return out if arg is None else out + CONTROL_ARG.pack(arg)


def parse_header(response: bytes) -> tuple[int, int]:
    return HDR.unpack_from(response)


def parse_queue_response(response: bytes) -> tuple[int, int, int, int]:
    """(type, timestamp, flags, size)."""
    (kind, _), rest = HDR.unpack_from(response), response[HDR.size :]
    return (kind, *RESOURCE_QUEUE_RESP.unpack_from(rest))


def parse_params(response: bytes) -> Params:
    return Params.decode(response[HDR.size : HDR.size + PARAMS.size])


def parse_capability(response: bytes) -> list[tuple[int, int, list[tuple[int, ...]]]]:
    """[(format, mask, [(wmin, wmax, wstep, hmin, hmax, hstep, nrates)...])...]."""
    (num,) = CAP_RESP.unpack_from(response, HDR.size)
    at = HDR.size + CAP_RESP.size
    descs = []
    for _ in range(num):
        mask, fmt, _layout, _align, nframes = FORMAT_DESC.unpack_from(response, at)
        at += FORMAT_DESC.size
        frames = []
        for _ in range(nframes):
            w = FORMAT_RANGE.unpack_from(response, at)
            h = FORMAT_RANGE.unpack_from(response, at + FORMAT_RANGE.size)
            (nrates,) = FORMAT_FRAME_TAIL.unpack_from(response, at + 2 * FORMAT_RANGE.size)
            at += 2 * FORMAT_RANGE.size + FORMAT_FRAME_TAIL.size + nrates * FORMAT_RANGE.size
            frames.append((*w, *h, nrates))
        descs.append((fmt, mask, frames))
    assert at == len(response)
    return descs


def parse_query_control(response: bytes) -> list[int]:
    (num,) = QUERY_CONTROL_RESP.unpack_from(response, HDR.size)
    at = HDR.size + QUERY_CONTROL_RESP.size
    return list(struct.unpack_from(f"<{num}I", response, at))


class Driver:
    """Plays the guest driver on a started frontend's command and event queues."""

    def __init__(self, frontend: Frontend) -> None:
        assert frontend.ram is not None
        self.frontend = frontend
        self.ram = frontend.ram
        self.cmdq, self.eventq = frontend.queues[COMMANDQ], frontend.queues[EVENTQ]
        self.used: dict[int, int] = {}
        self.order: list[int] = []  # heads in the order the device answered them
        self.answers: dict[int, int] = {}  # head -> the GPA of its response buffer
        self.events_posted: dict[int, int] = {}

    def config(self) -> tuple[int, int, int]:
        return CONFIG.unpack(self.frontend.get_config(0, CONFIG.size))

    def post(self, request: bytes, room: int = ROOM) -> int:
        """Post one command without waiting; its head."""
        src = self.ram.alloc(max(1, len(request)))
        self.ram.memory.write(src, request)
        chain = [(src, len(request), False)]
        dst = 0
        if room:
            dst = self.ram.alloc(room)
            self.ram.memory.write(dst, b"\xee" * room)
            chain.append((dst, room, True))
        head = self.cmdq.driver.add(chain)
        self.answers[head] = dst
        self.cmdq.publish()
        return head

    def post_raw(self, chain: Sequence[tuple[int, int, bool]]) -> int:
        head = self.cmdq.driver.add(chain)
        self.cmdq.publish()
        return head

    def _collect(self, timeout: float) -> None:
        for head, length in self.cmdq.wait_used(1, timeout):
            self.used[head] = length
            self.order.append(head)

    def wait(self, head: int, timeout: float = 5.0) -> int:
        """The used length of `head`, waiting for it."""
        deadline = time.monotonic() + timeout
        while head not in self.used:
            self._collect(max(0.01, deadline - time.monotonic()))
        return self.used.pop(head)

    def answered(self, head: int, timeout: float = 0.3) -> bool:
        """Whether `head` is answered within `timeout` (its answer is kept for wait)."""
        try:
            self.used[head] = self.wait(head, timeout)
        except TimeoutError:
            return False
        return True

    def response(self, head: int) -> bytes:
        length = self.wait(head)
        return self.ram.memory.read(self.answers[head], length)

    def command(self, request: bytes, room: int = ROOM) -> bytes:
        return self.response(self.post(request, room))

    def status(self, request: bytes) -> int:
        return parse_header(self.command(request))[0]

    # -- guest buffers -------------------------------------------------------------

    def buffer(self, data: bytes | int) -> tuple[int, int]:
        """Guest memory for a resource: (gpa, length), filled with `data`."""
        size = data if isinstance(data, int) else len(data)
        gpa = self.ram.alloc(size, 4096)
        if not isinstance(data, int):
            self.ram.memory.write(gpa, data)
        return gpa, size

    # -- the event queue ------------------------------------------------------------

    def post_events(self, count: int = 4, size: int = EVENT.size) -> None:
        for _ in range(count):
            gpa = self.ram.alloc(size)
            self.events_posted[self.eventq.driver.add([(gpa, size, True)])] = gpa
        self.eventq.publish()

    def events(self, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
        out = []
        for head, length in self.eventq.wait_used(count, timeout):
            assert length == EVENT.size
            out.append(EVENT.unpack(self.ram.memory.read(self.events_posted.pop(head), length)))
        return out
