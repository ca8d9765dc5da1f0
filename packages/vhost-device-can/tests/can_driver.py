"""The virtio-can driver's side for frontend tests, per the virtio-can draft (no Linux
driver is merged): a TX request is the header and sdu in one device-readable buffer
and a 1-byte result after it; rx buffers are one device-writable buffer each."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from vhost_device_can.protocol import (
    CTRLQ,
    HEADER,
    HEADER_SIZE,
    MSG_RX,
    QUEUE_SIZE,
    RXQ,
    SET_CTRL_MODE_START,
    SET_CTRL_MODE_STOP,
    TXQ,
    Frame,
    Result,
    encode_tx,
)
from vhost_user_core.frontend import Frontend

NO_RESULT = 0xEE  # what a result byte holds until the device writes it
RX_BUFFER = HEADER_SIZE + 64  # what Linux's proposed driver posts


class Driver:
    """Plays the guest driver on a started frontend's three queues."""

    def __init__(self, frontend: Frontend) -> None:
        assert frontend.ram is not None
        self.frontend = frontend
        self.ram = frontend.ram
        self.txq, self.rxq, self.ctrlq = (frontend.queues[i] for i in (TXQ, RXQ, CTRLQ))

    def _request(self, queue_index: int, payload: bytes) -> int:
        queue = self.frontend.queues[queue_index]
        src, result = self.ram.alloc(max(1, len(payload))), self.ram.alloc(1)
        self.ram.memory.write(src, payload)
        self.ram.memory.write(result, bytes([NO_RESULT]))
        head = queue.driver.add([(src, len(payload), False), (result, 1, True)])
        queue.publish()
        assert queue.wait_used(1) == [(head, 1)]
        return self.ram.memory.read(result, 1)[0]

    def raw(self, queue_index: int, chain: Sequence[tuple[int, int, bool]]) -> int:
        """Post one raw chain; its used length."""
        queue = self.frontend.queues[queue_index]
        head = queue.driver.add(chain)
        queue.publish()
        ((used_head, length),) = queue.wait_used(1)
        assert used_head == head
        return length

    def control(self, msg_type: int) -> int:
        return self._request(CTRLQ, struct.pack("<H", msg_type))

    def start(self) -> int:
        return self.control(SET_CTRL_MODE_START)

    def stop(self) -> int:
        return self.control(SET_CTRL_MODE_STOP)

    def send(self, frame: Frame) -> int:
        return self._request(TXQ, encode_tx(frame))

    def send_raw(self, request: bytes) -> int:
        return self._request(TXQ, request)

    def post_rx(self, count: int = 1, size: int = RX_BUFFER) -> list[tuple[int, int]]:
        """Post `count` rx buffers; their (head, gpa)."""
        posted = []
        for _ in range(count):
            gpa = self.ram.alloc(size)
            posted.append((self.rxq.driver.add([(gpa, size, True)]), gpa))
        self.rxq.publish()
        return posted

    def receive(
        self, posted: list[tuple[int, int]], count: int = 1, timeout: float = 5.0
    ) -> list[Frame]:
        """Wait for `count` of the posted buffers; the frames they carry."""
        where = dict(posted)
        frames = []
        for head, length in self.rxq.wait_used(count, timeout):
            frames.append(decode_rx(self.ram.memory.read(where[head], length)))
        return frames

    def status(self) -> int:
        return int.from_bytes(self.frontend.get_config(0, 2), "little")


def decode_rx(message: bytes) -> Frame:
    msg_type, length, dlc, padding, xl, flags, can_id = HEADER.unpack_from(message)
    assert (msg_type, dlc, padding, xl) == (MSG_RX, 0, 0, 0)
    assert flags & ~0xE000 == 0
    rtr = bool(flags & 0x2000)
    assert len(message) == HEADER_SIZE + (0 if rtr else length)
    return Frame(
        can_id,
        message[HEADER_SIZE:],
        extended=bool(flags & 0x8000),
        fd=bool(flags & 0x4000),
        rtr=rtr,
        rtr_length=length if rtr else 0,
    )


def exchange_between(one: Frontend, two: Frontend, fd_payload: int) -> None:
    """Two daemon sockets on one bus: a classic frame from the first reaches the
    second, and an extended CAN FD frame of `fd_payload` bytes comes back."""
    one.start_device(3, QUEUE_SIZE)
    two.start_device(3, QUEUE_SIZE)
    a, b = Driver(one), Driver(two)
    assert a.start() == b.start() == Result.OK
    posted_a, posted_b = a.post_rx(), b.post_rx()
    assert a.send(Frame(0x100, b"from a")) == Result.OK
    assert b.receive(posted_b) == [Frame(0x100, b"from a")]
    back = Frame(0x1234567, bytes(fd_payload), extended=True, fd=True)
    assert b.send(back) == Result.OK
    assert a.receive(posted_a) == [back]
