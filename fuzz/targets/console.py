"""vhost-device-console with its host end on a real pseudo-terminal (`PtyHost`): fuzzed
control packets from the guest (DEVICE_READY, PORT_READY, PORT_OPEN, any port, event
and value, short ones, repeated without taking the answers), control rx buffers of any
size, tx data, rx buffers of any size posted in any rhythm, bytes typed on the far end
of the pty, and emergency writes through the config space.

Invariants:
- nothing but VhostUserError escapes `handle_queue`, `set_config` or the worker's fd
  callbacks;
- every tx and control tx chain is completed once, with 0;
- the control packets the guest gets follow a model of the handshake: PORT_ADD per
  DEVICE_READY(1); CONSOLE_PORT, PORT_NAME (with the name) and PORT_OPEN per
  PORT_READY(1) on port 0; in order; at most 32 waiting (the rest dropped); a buffer
  too small for the next packet comes back empty and the packet is lost;
- PORT_OPEN from the guest opens or closes the port as it says;
- the bytes typed on the far end reach the rx buffers in order, none lost or repeated,
  and what the guest transmits (and each emergency write's byte) comes out of the
  far end in order, all of it;
- afterwards one more byte each way gets through.
"""

from __future__ import annotations

import os
import select
import struct
from collections import deque

import atheris
from harness import Rig, check

from vhost_device_console.device import (
    CONSOLE_PORT,
    CTRL_RX,
    CTRL_TX,
    DEVICE_ADD,
    DEVICE_READY,
    MAX_PENDING_CONTROL,
    PORT_NAME,
    PORT_NAME_TEXT,
    PORT_OPEN,
    PORT_READY,
    RX,
    TX,
    ConsoleBackend,
)
from vhost_device_console.host import PtyHost
from vhost_user_core.errors import VhostUserError

CONTROL = struct.Struct("<IHH")
EVENTS = [DEVICE_READY, PORT_READY, PORT_OPEN, DEVICE_ADD, 5, 7, 0xFFFF]


class ConsoleRig:
    def __init__(self) -> None:
        self.rig = Rig([64, 64, 64, 64])
        self.host = PtyHost()
        self.far = os.open(self.host.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.backend = ConsoleBackend(self.host, max_queue_size=64)
        self.backend.attach([self.rig.worker], self.rig.vrings)
        self.pending: deque[bytes] = deque()  # control packets the device holds
        self.ctrl_buffers: deque[tuple[int, int]] = deque()  # (head, size) not yet used
        self.typed = b""  # written on the far end
        self.received = b""  # what reached rx buffers
        self.sent = b""  # what the guest transmitted, in order
        self.output = b""  # what came out of the far end
        self.rx: dict[int, int] = {}
        self.guest_open = False

    def send_control(self, packet: bytes) -> None:
        if len(self.pending) < MAX_PENDING_CONTROL:
            self.pending.append(packet)

    def guest_control(self, fdp: atheris.FuzzedDataProvider) -> None:
        port = fdp.PickValueInList([0, 0, 0, 1, 0xFFFFFFFF])
        event = fdp.PickValueInList(EVENTS)
        value = fdp.PickValueInList([1, 1, 0, 2, 0xFFFF])
        packet = CONTROL.pack(port, event, value)
        if fdp.ConsumeIntInRange(0, 7) == 0:
            packet = packet[: fdp.ConsumeIntInRange(0, 7)] or b"\0"
        elif fdp.ConsumeIntInRange(0, 7) == 0:
            packet += fdp.ConsumeBytes(8)
        head = self.rig.post(CTRL_TX, [packet], [])
        if head is None:
            return
        if len(packet) >= CONTROL.size:
            port, event, value = CONTROL.unpack_from(packet)
            if event == DEVICE_READY and value == 1:
                self.send_control(CONTROL.pack(0, DEVICE_ADD, 0))
            elif event == PORT_READY and port == 0 and value == 1:
                self.send_control(CONTROL.pack(0, CONSOLE_PORT, 1))
                self.send_control(CONTROL.pack(0, PORT_NAME, 0) + PORT_NAME_TEXT)
                self.send_control(CONTROL.pack(0, PORT_OPEN, 1))
            elif event == PORT_OPEN and port == 0 and event != DEVICE_READY:
                self.guest_open = value == 1
        self.rig.publish(CTRL_TX)
        self.backend.handle_queue(self.rig.vrings[CTRL_TX])
        check(self.rig.used(CTRL_TX) == [(head, 0)], "control tx not completed with 0")
        check(self.backend.guest_open == self.guest_open, "the port's open state")

    def type(self, text: bytes) -> int:
        """Type on the far end as much as the pty takes now."""
        try:
            done = os.write(self.far, text)
        except BlockingIOError:
            return 0
        self.typed += text[:done]
        return done

    def post_control_rx(self, size: int) -> None:
        head = self.rig.post(CTRL_RX, [], [size])
        if head is not None:
            self.ctrl_buffers.append((head, size))
        self.rig.publish(CTRL_RX)
        self.backend.handle_queue(self.rig.vrings[CTRL_RX])

    def reap_control(self) -> None:
        for head, length in self.rig.used(CTRL_RX):
            check(self.ctrl_buffers and self.pending, f"control rx {head} used, nothing due")
            want_head, size = self.ctrl_buffers.popleft()
            check(head == want_head, f"control rx {head} used before {want_head}")
            packet = self.pending.popleft()
            want = packet if len(packet) <= size else b""
            got = self.rig.written(CTRL_RX, head, length)
            check(got == want, f"control packet {got.hex()}, expected {want.hex()}")
            del self.rig.writable[CTRL_RX][head]
        check(not (self.ctrl_buffers and self.pending), "a control packet waits with a buffer")

    def transmit(self, data: list[bytes]) -> None:
        for chunk in data:
            if chunk and self.rig.post(TX, [chunk], []) is not None:
                self.sent += chunk
        self.rig.publish(TX)
        self.backend.handle_queue(self.rig.vrings[TX])

    def post_rx(self, size: int) -> None:
        head = self.rig.post(RX, [], [size])
        if head is not None:
            self.rx[head] = size
        self.rig.publish(RX)
        self.backend.handle_queue(self.rig.vrings[RX])

    def pump(self, wait: float = 0.0) -> None:
        """Let the pty move bytes (its far end is read here), run the worker, reap."""
        if wait:
            select.select([self.far, self.host.in_fd or self.far], [], [], wait)
        self.rig.worker.step()
        while True:
            try:
                chunk = os.read(self.far, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.output += chunk
        self.rig.worker.step()
        for head, length in self.rig.used(RX):
            check(head in self.rx, f"rx buffer {head} completed twice")
            size = self.rx.pop(head)
            check(length <= size, f"rx buffer {head}: {length} of {size}")
            self.received += self.rig.written(RX, head, length)
            del self.rig.writable[RX][head]
        for head, length in self.rig.used(TX):
            check(length == 0, f"tx buffer {head} used {length}")
        check(self.typed.startswith(self.received), "rx bytes are not what was typed")
        check(self.sent.startswith(self.output), "the far end got what was not sent")
        self.reap_control()

    def settle(self, what: str, done: object) -> None:
        """Pump until `done()`: the pty moves bytes on its own time (at most 5 s)."""
        for _ in range(500):
            if callable(done) and done():
                return
            if len(self.rx) < 4:
                for _ in range(8):
                    self.post_rx(64)
            self.pump(0.01)
        check(False, f"{what} did not get through")

    def close(self) -> None:
        self.backend.close()
        os.close(self.far)
        self.host.close()
        self.rig.close()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    c = ConsoleRig()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            action = fdp.ConsumeIntInRange(0, 9)
            if action <= 2:
                c.guest_control(fdp)
            elif action == 3:
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    c.post_control_rx(fdp.PickValueInList([64, 64, 8, 4, 34]))
            elif action <= 5:
                chunks = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300)) for _ in range(4)]
                c.transmit(chunks[: fdp.ConsumeIntInRange(1, 4)])
            elif action == 6:
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    c.post_rx(fdp.PickValueInList([64, 1, 512, 4096]))
            elif action == 7:
                text = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 600)) or b"\x1d"
                c.type(text)
            else:
                offset = fdp.PickValueInList([8, 8, 0, 9, 12])
                value = fdp.ConsumeBytes(fdp.PickValueInList([1, 4, 0, 5]))
                try:
                    c.backend.set_config(offset, value)
                    check(offset == 8 and 1 <= len(value) <= 4, f"config write at {offset}")
                    c.rig.worker.step()
                    c.sent += value[:1]
                except VhostUserError:
                    check(not (offset == 8 and 1 <= len(value) <= 4), "emerg_wr refused")
            c.pump()
        c.settle("the typed bytes", lambda: c.received == c.typed)
        c.settle("the guest's output", lambda: c.output == c.sent)
        check(c.type(b"!"), "the pty takes no more input")
        c.transmit([b"?"])
        c.settle("one more byte each way", lambda: c.received == c.typed and c.output == c.sent)
    finally:
        c.close()
