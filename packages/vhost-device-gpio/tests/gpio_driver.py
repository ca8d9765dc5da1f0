"""A virtio-gpio driver in miniature over the core's frontend, for the tests and bench:
requests on queue 0, event buffers on queue 1, as Linux's gpio-virtio posts them."""

from __future__ import annotations

import struct

from vhost_user_core.frontend import Frontend, FrontendQueue


class GpioDriver:
    def __init__(self, frontend: Frontend, queue_size: int = 256) -> None:
        self.frontend = frontend
        self.requestq, self.eventq = frontend.start_device(2, queue_size)
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.events: dict[int, tuple[int, int]] = {}  # head -> (line, response address)

    def post(self, queue: FrontendQueue, data: bytes, room: int) -> tuple[int, int]:
        """Post one chain: `data` readable, `room` writable bytes; (head, out address)."""
        src, dst = self.ram.alloc(max(len(data), 1)), self.ram.alloc(max(room, 1))
        self.ram.memory.write(src, data)
        chain = [(src, len(data), False)] if data else []
        if room:
            chain.append((dst, room, True))
        head = queue.driver.add(chain)
        queue.publish()
        return head, dst

    def raw(self, data: bytes, room: int = 2) -> bytes:
        """One request on the requestq; what the device wrote (its used length's worth)."""
        _, dst = self.post(self.requestq, data, room)
        ((_, used),) = self.requestq.wait_used(1)
        return self.ram.memory.read(dst, used)

    def request(self, type_: int, gpio: int, value: int = 0, room: int = 2) -> bytes:
        return self.raw(struct.pack("<HHI", type_, gpio, value), room)

    def arm(self, line: int) -> int:
        """Post an event buffer for `line`; its head."""
        head, dst = self.post(self.eventq, struct.pack("<H", line), 1)
        self.events[head] = (line, dst)
        return head

    def fired(self, count: int = 1, timeout: float = 5.0) -> list[tuple[int, int, bytes]]:
        """Wait for `count` event completions: (line, used length, status bytes)."""
        out = []
        for head, used in self.eventq.wait_used(count, timeout):
            line, dst = self.events.pop(head)
            out.append((line, used, self.ram.memory.read(dst, used)))
        return out

    def quiet(self, timeout: float = 0.2) -> bool:
        """True if no event buffer completes within `timeout`."""
        try:
            self.eventq.wait_used(1, timeout)
        except TimeoutError:
            return True
        return False
