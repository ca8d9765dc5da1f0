"""The guest's side of virtio-input as the Linux driver does it, over the core's
Python frontend: one 8-byte buffer per event, config read through select/subsel."""

from __future__ import annotations

import struct

from vhost_user_core.frontend import Frontend, FrontendQueue

EVENT = struct.Struct("<HHi")


def post_event_buffers(frontend: Frontend, queue: FrontendQueue, count: int) -> list[int]:
    """`count` device-writable 8-byte buffers on the eventq; their addresses by head."""
    assert frontend.ram is not None
    heads = []
    for _ in range(count):
        addr = frontend.ram.alloc(8)
        heads.append(queue.driver.add([(addr, 8, True)]))
        BUFFERS[(id(queue), heads[-1])] = addr
    queue.publish()
    return heads


BUFFERS: dict[tuple[int, int], int] = {}


def read_events(
    frontend: Frontend, queue: FrontendQueue, count: int, timeout: float = 5.0
) -> list[tuple[int, int, int]]:
    """The next `count` used eventq buffers, decoded (a 0-length one as None is skipped
    by the Linux driver, so it is dropped here too)."""
    assert frontend.ram is not None
    events = []
    for head, length in queue.wait_used(count, timeout):
        if length >= 8:
            addr = BUFFERS[(id(queue), head)]
            events.append(EVENT.unpack(frontend.ram.memory.read(addr, 8)))
    return events


def send_status(frontend: Frontend, queue: FrontendQueue, event: tuple[int, int, int]) -> int:
    assert frontend.ram is not None
    addr = frontend.ram.alloc(8)
    frontend.ram.memory.write(addr, EVENT.pack(*event))
    head = queue.driver.add([(addr, 8, False)])
    queue.publish()
    return head


def cfg(frontend: Frontend, select: int, subsel: int = 0) -> bytes:
    """The union's bytes for (select, subsel), `size` long, as virtinput_cfg_select()."""
    frontend.set_config(0, bytes([select]))
    frontend.set_config(1, bytes([subsel]))
    size = frontend.get_config(2, 1)[0]
    return frontend.get_config(8, size) if size else b""
