"""The guest driver's side of virtio-scmi for tests: commands on the cmdq and
buffers on the eventq through the core's frontend, the way Linux's
drivers/firmware/arm_scmi/virtio.c queues them."""

from __future__ import annotations

import struct
import time

from vhost_device_scmi.protocol import Header, MessageType
from vhost_user_core.frontend import Frontend, FrontendQueue

REPLY_ROOM = 136  # Linux's virtio transport: VIRTIO_SCMI_MAX_PDU_SIZE


class ScmiDriver:
    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        self.cmdq, self.eventq = frontend.start_device(2, 1024)
        self._token = 0

    @property
    def ram(self):  # noqa: ANN201 - the frontend's GuestRam
        assert self.frontend.ram is not None
        return self.frontend.ram

    def raw(self, request: bytes, room: int = REPLY_ROOM) -> bytes:
        """Any bytes as a command; what the device wrote back."""
        src, dst = self.ram.alloc(max(1, len(request))), self.ram.alloc(room)
        self.ram.memory.write(src, request)
        head = self.cmdq.driver.add([(src, len(request), False), (dst, room, True)])
        self.cmdq.publish()
        ((used_head, length),) = self.cmdq.wait_used(1)
        assert used_head == head
        return self.ram.memory.read(dst, length)

    def call(
        self, protocol: int, message: int, *args: int, room: int = REPLY_ROOM
    ) -> tuple[int, bytes]:
        """A command with u32 parameters: its status and return values, checked to
        echo the command's header."""
        self._token = (self._token + 1) & 0x3FF
        header = Header(message, protocol, self._token).pack()
        reply = self.raw(header + struct.pack(f"<{len(args)}I", *args), room)
        assert reply[:4] == header, "the reply echoes the command's header"
        (status,) = struct.unpack_from("<i", reply, 4)
        return status, reply[8:]

    def post_event_buffers(self, count: int, size: int = REPLY_ROOM) -> list[tuple[int, int]]:
        """Device-writable buffers on the eventq; (head, gpa) of each."""
        buffers = []
        for _ in range(count):
            gpa = self.ram.alloc(size)
            buffers.append((self.eventq.driver.add([(gpa, size, True)]), gpa))
        self.eventq.publish()
        return buffers

    def notifications(
        self, buffers: dict[int, int], count: int, timeout: float = 5.0
    ) -> list[bytes]:
        """`count` filled eventq buffers, in completion order."""
        used = self.eventq.wait_used(count, timeout)
        return [self.ram.memory.read(buffers[head], length) for head, length in used]


def none_used(queue: FrontendQueue, wait: float = 0.3) -> bool:
    """Nothing completed on `queue` within `wait` seconds."""
    time.sleep(wait)
    return queue.driver.get_used() == []


def notification_header(data: bytes) -> Header:
    header = Header.unpack(data)
    assert header.type == MessageType.NOTIFICATION
    return header


__all__ = ["ScmiDriver", "none_used", "notification_header"]
