"""The virtio-console multiport driver in miniature over the core's frontend, as Linux's
virtio_console posts its buffers: rx and control rx writable, tx and control tx readable."""

from __future__ import annotations

import struct

from vhost_user_core.frontend import Frontend, FrontendQueue

CONTROL = struct.Struct("<IHH")
DEVICE_READY, PORT_ADD, PORT_REMOVE, PORT_READY, CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = range(
    8
)


class ConsoleDriver:
    def __init__(self, frontend: Frontend, queue_size: int = 128) -> None:
        self.frontend = frontend
        self.rx, self.tx, self.ctrl_rx, self.ctrl_tx = frontend.start_device(4, queue_size)
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.posted: dict[tuple[int, int], int] = {}  # (queue, head) -> address

    def post_writable(self, queue: FrontendQueue, room: int, count: int = 1) -> None:
        for _ in range(count):
            dst = self.ram.alloc(room)
            self.posted[(queue.index, queue.driver.add([(dst, room, True)]))] = dst
        queue.publish()

    def written(self, queue: FrontendQueue, count: int, timeout: float = 5.0) -> list[bytes]:
        out = []
        for head, used in queue.wait_used(count, timeout):
            out.append(self.ram.memory.read(self.posted.pop((queue.index, head)), used))
        return out

    def send(self, queue: FrontendQueue, data: bytes) -> int:
        src = self.ram.alloc(max(len(data), 1))
        self.ram.memory.write(src, data)
        head = queue.driver.add([(src, len(data), False)])
        queue.publish()
        ((done, used),) = queue.wait_used(1)
        assert done == head
        return used

    def control(self, port: int, event: int, value: int) -> None:
        self.send(self.ctrl_tx, CONTROL.pack(port, event, value))

    def packets(self, count: int) -> list[tuple[int, int, int, bytes]]:
        """The next `count` control packets: (port, event, value, what follows)."""
        return [
            (*CONTROL.unpack_from(data), data[CONTROL.size :])
            for data in self.written(self.ctrl_rx, count)
        ]

    def handshake(self, expect: int = 4) -> list[tuple[int, int, int, bytes]]:
        """DEVICE_READY .. PORT_READY, then the guest opens the port; the packets seen."""
        self.post_writable(self.ctrl_rx, 64, 16)
        self.control(0, DEVICE_READY, 1)
        seen = self.packets(1)
        self.control(0, PORT_READY, 1)
        seen += self.packets(expect - 1)
        self.control(0, PORT_OPEN, 1)
        return seen
