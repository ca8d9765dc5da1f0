"""The virtio-i2c driver's side for frontend tests: posts requests as Linux's
i2c-virtio does (out header, data, status: one descriptor each) and reads answers."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vhost_user_core.frontend import Frontend, FrontendQueue

FAIL_NEXT, M_RD = 1, 2
OK, ERR = 0, 1
NO_STATUS = 0xEE  # what a status byte holds until the device writes it


@dataclass
class Msg:
    """One message to post: a write of `data`, or a read of `length` bytes."""

    addr: int
    data: bytes = b""
    length: int = 0
    read: bool = False


def w(addr: int, *data: int) -> Msg:
    return Msg(addr, bytes(data))


def r(addr: int, length: int) -> Msg:
    return Msg(addr, length=length, read=True)


@dataclass
class Posted:
    head: int
    status_gpa: int
    data_gpa: int
    length: int


class Driver:
    """Posts transfers on queue 0 of a started frontend and collects the answers."""

    def __init__(self, frontend: Frontend) -> None:
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.queue: FrontendQueue = frontend.queues[0]

    def header(self, addr: int, flags: int) -> int:
        gpa = self.ram.alloc(8)
        self.ram.memory.write(gpa, struct.pack("<HHI", addr << 1, 0, flags))
        return gpa

    def status(self) -> int:
        gpa = self.ram.alloc(1)
        self.ram.memory.write(gpa, bytes([NO_STATUS]))
        return gpa

    def post(self, msg: Msg, fail_next: bool) -> Posted:
        flags = (FAIL_NEXT if fail_next else 0) | (M_RD if msg.read else 0)
        chain = [(self.header(msg.addr, flags), 8, False)]
        data_gpa, length = 0, len(msg.data)
        if msg.read and msg.length:
            data_gpa, length = self.ram.alloc(msg.length), msg.length
            chain.append((data_gpa, length, True))
        elif msg.data:
            data_gpa = self.ram.alloc(length)
            self.ram.memory.write(data_gpa, msg.data)
            chain.append((data_gpa, length, False))
        status = self.status()
        chain.append((status, 1, True))
        return Posted(self.queue.driver.add(chain), status, data_gpa, length)

    def raw(self, chain: Sequence[tuple[int, int, bool]]) -> int:
        return self.queue.driver.add(chain)

    def transfer(self, *msgs: Msg) -> list[tuple[int, bytes]]:
        """One i2c_transfer(): FAIL_NEXT on all but the last; each (status, read data)."""
        posted = [self.post(m, i < len(msgs) - 1) for i, m in enumerate(msgs)]
        self.queue.publish()
        used = dict(self.queue.wait_used(len(posted)))
        out = []
        for msg, p in zip(msgs, posted, strict=True):
            expect = (p.length + 1) if msg.read else 1
            status = self.ram.memory.read(p.status_gpa, 1)[0]
            assert used[p.head] == (expect if status == OK else 1), (used[p.head], status)
            data = self.ram.memory.read(p.data_gpa, p.length) if msg.read and status == OK else b""
            out.append((status, data))
        return out

    def statuses(self, *msgs: Msg) -> list[int]:
        return [status for status, _ in self.transfer(*msgs)]
