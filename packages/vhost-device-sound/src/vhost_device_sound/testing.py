"""The guest driver's side of virtio-snd over the core's Python frontend, for tests and
benchmarks: control requests, and tx/rx buffers posted and reaped with timestamps."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vhost_user_core import STANDARD_FEATURES
from vhost_user_core.frontend import Frontend, FrontendQueue, GuestRam

from .protocol import (
    QUEUE_SIZE,
    VIRTIO_SND_F_CTLS,
    Code,
    Format,
    Header,
    ItemHeader,
    PcmStatus,
    PcmXfer,
    QueryInfo,
    Queue,
    Rate,
    SetParams,
    Status,
)

CONFIG_SIZE = 16


@dataclass
class Completed:
    """One tx/rx buffer back from the device."""

    head: int
    status: int
    latency: int
    data: bytes
    at: float  # time.monotonic() when reaped


class SoundDriver:
    """Plays the virtio-snd driver against a connected Frontend."""

    def __init__(self, frontend: Frontend, *, controls: bool = False) -> None:
        self.frontend = frontend
        features = STANDARD_FEATURES | (VIRTIO_SND_F_CTLS if controls else 0)
        self.queues = frontend.start_device(
            len(Queue), QUEUE_SIZE, memory_size=32 << 20, features=features
        )
        self.control, self.event, self.tx, self.rx = self.queues
        self._io: dict[int, dict[int, tuple[int, int, int]]] = {Queue.TX: {}, Queue.RX: {}}

    @property
    def ram(self) -> GuestRam:
        assert self.frontend.ram is not None
        return self.frontend.ram

    # -- control queue ------------------------------------------------------------------

    def request(self, payload: bytes, response_size: int = 4, timeout: float = 5.0) -> bytes:
        """Post one control request; returns what the device wrote back."""
        src = self.ram.alloc(max(len(payload), 1))
        dst = self.ram.alloc(max(response_size, 1))
        self.ram.memory.write(src, payload)
        buffers = [(src, len(payload), False)] if payload else []
        if response_size:
            buffers.append((dst, response_size, True))
        head = self.control.driver.add(buffers)
        self.control.publish()
        ((used, length),) = self.control.wait_used(1, timeout)
        assert used == head
        return self.ram.memory.read(dst, length)

    def status(self, payload: bytes, response_size: int = 4) -> Status:
        return Status(Header.decode(self.request(payload, response_size)).code)

    def query(self, code: Code, count: int, size: int, start: int = 0) -> tuple[Status, bytes]:
        answer = self.request(QueryInfo(code, start, count, size).encode(), 4 + count * size)
        return Status(Header.decode(answer).code), answer[4:]

    def set_params(
        self,
        stream: int,
        *,
        fmt: Format = Format.S16,
        rate: Rate = Rate.R48000,
        channels: int = 2,
        period_bytes: int = 1920,
        buffer_bytes: int = 1920 * 4,
        features: int = 0,
    ) -> Status:
        return self.status(
            SetParams(
                Code.PCM_SET_PARAMS,
                stream,
                buffer_bytes,
                period_bytes,
                features,
                channels,
                fmt,
                rate,
            ).encode()
        )

    def pcm(self, code: Code, stream: int) -> Status:
        return self.status(ItemHeader(code, stream).encode())

    def start_stream(self, stream: int, **params: object) -> None:
        """SET_PARAMS, PREPARE, START, each asserted OK."""
        assert self.set_params(stream, **params) is Status.OK  # type: ignore[arg-type]
        assert self.pcm(Code.PCM_PREPARE, stream) is Status.OK
        assert self.pcm(Code.PCM_START, stream) is Status.OK

    # -- tx / rx ------------------------------------------------------------------------

    def post_playback(self, data: bytes, stream: int = 0, publish: bool = True) -> int:
        """One tx buffer: xfer header + data (readable), status (writable)."""
        src = self.ram.alloc(4 + len(data))
        self.ram.memory.write(src, PcmXfer(stream).encode() + data)
        status = self.ram.alloc(8)
        head = self.tx.driver.add([(src, 4 + len(data), False), (status, 8, True)])
        self._io[Queue.TX][head] = (status, 0, 0)
        if publish:
            self.tx.publish()
        return head

    def post_capture(self, size: int, stream: int = 1, publish: bool = True) -> int:
        """One rx buffer: xfer header (readable), room for `size` bytes + status."""
        hdr = self.ram.alloc(4)
        self.ram.memory.write(hdr, PcmXfer(stream).encode())
        room = self.ram.alloc(size + 8)
        head = self.rx.driver.add([(hdr, 4, False), (room, size + 8, True)])
        self._io[Queue.RX][head] = (room + size, room, size)
        if publish:
            self.rx.publish()
        return head

    def ready(self, queue: FrontendQueue) -> list[Completed]:
        """The buffers of `queue` the device has returned by now (no waiting)."""
        now = time.monotonic()
        done = []
        for head, length in queue.driver.get_used():
            # The status is always the writable area's last 8 bytes; `length` counts
            # the data written before it (partial when a stream is released).
            status_at, data_at, size = self._io[queue.index].pop(head)
            status, latency = struct.unpack("<II", self.ram.memory.read(status_at, 8))
            data = self.ram.memory.read(data_at, max(length - 8, 0)) if size else b""
            done.append(Completed(head, status, latency, data, now))
        return done

    def reap(self, queue: FrontendQueue, count: int, timeout: float = 5.0) -> list[Completed]:
        """Wait for `count` buffers of `queue`, timestamped as each batch arrives."""
        done: list[Completed] = []
        deadline = time.monotonic() + timeout
        while len(done) < count:
            used = self.ready(queue)
            if not used:
                # Like a guest driver: ask for the next interrupt, then look once more.
                queue.driver.arm_interrupt()
                used = self.ready(queue)
            done += used
            if len(done) < count and not used:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(done)} of {count} I/O buffers came back")
                queue.wait_call(remaining)
        return done

    def stream(
        self, queue: FrontendQueue, count: int, in_flight: int, post: Callable[[int], object]
    ) -> list[Completed]:
        """Move `count` buffers as a driver does: at most `in_flight` (its buffer) with
        the device at once, buffer i posted by `post(i)` as soon as one comes back."""
        posted = min(count, in_flight)
        for i in range(posted):
            post(i)
        queue.publish()
        done: list[Completed] = []
        while len(done) < count:
            back = self.reap(queue, 1)
            done += back
            for _ in back:
                if posted < count:
                    post(posted)
                    posted += 1
            queue.publish()
        return done

    def play(self, periods: Sequence[bytes], in_flight: int, stream: int = 0) -> list[Completed]:
        """Play one tx buffer per item of `periods`, keeping `in_flight` with the device."""
        return self.stream(
            self.tx,
            len(periods),
            in_flight,
            lambda i: self.post_playback(periods[i], stream, publish=False),
        )

    def capture(self, count: int, size: int, in_flight: int, stream: int = 1) -> list[Completed]:
        """Capture `count` rx buffers of `size` bytes, keeping `in_flight` with the device."""
        return self.stream(
            self.rx, count, in_flight, lambda _: self.post_capture(size, stream, publish=False)
        )

    def config(self) -> tuple[int, int, int, int]:
        return struct.unpack("<IIII", self.frontend.get_config(0, CONFIG_SIZE))


def tone(
    freq: float, seconds: float, rate: int = 48000, channels: int = 2, amplitude: int = 12000
) -> bytes:
    """S16 interleaved sine samples."""
    import math

    frames = int(seconds * rate)
    step = 2 * math.pi * freq / rate
    samples = [int(amplitude * math.sin(step * i)) for i in range(frames)]
    return struct.pack(f"<{frames * channels}h", *(s for s in samples for _ in range(channels)))


__all__ = ["Completed", "PcmStatus", "SoundDriver", "tone"]
