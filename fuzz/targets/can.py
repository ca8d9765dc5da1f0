"""vhost-device-can's txq, rxq and ctrlq on python-can's in-process virtual bus, with a
second node on that bus as the rest of the network: fuzzed TX requests (every header
field, lengths against the data, FD/RTR/extended flags, oversized, split), controller
START/STOP and malformed control requests, frames from the other node (valid or not
for the negotiated features), rx buffers of any size, and any negotiated features.

Invariants:
- nothing but VhostUserError escapes `handle_queue` or the worker's bus callback;
- every TX and control request is completed once with a result OK or NOT_OK (0 bytes
  without room); the TX result follows a model of the draft's rules written here
  (header, lengths, ids, FD and RTR against the features, the controller started),
  and exactly the OK frames reach the other node, in order, unchanged;
- a frame from the other node reaches the guest, in order and encoded as the draft
  says, exactly when the controller is started and the frame is valid for the
  features; an rx buffer too small for it comes back empty and the frame waits;
- the controller never goes BUSOFF (the virtual bus takes every valid frame);
- afterwards START, one TX frame and one frame from the other node both get through.
"""

from __future__ import annotations

import struct

import atheris
import can
from harness import Rig, check

from vhost_device_can.device import CanBackend
from vhost_device_can.host import VirtualCanBus
from vhost_device_can.protocol import (
    F_CAN_CLASSIC,
    F_CAN_FD,
    F_RTR_FRAMES,
    RXQ,
    STATUS_BUSOFF,
    TXQ,
)
from vhost_user_core.protocol import STANDARD_FEATURES

CTRLQ = 2
HEADER = struct.Struct("<HHBBHII")
MSG_TX, MSG_RX = 0x0001, 0x0101
START, STOP = 0x0201, 0x0202
EXT, FD, RTR = 0x8000, 0x4000, 0x2000
FD_LENGTHS = {*range(9), 12, 16, 20, 24, 32, 48, 64}
BUS = VirtualCanBus("fuzz-can")
OTHER = can.Bus(interface="virtual", channel="fuzz-can", receive_own_messages=False)
IDS = [0x123, 0x7FF, 0x800, 0x1FFFFFFF, 0x20000000, 0, 0xFFFFFFFF]
LENGTHS = [0, 1, 8, 9, 12, 15, 64, 65]

Frame = tuple[int, bytes, int, int]  # id, data, flags (EXT|FD|RTR), length


def valid(frame: Frame, features: int) -> bool:
    can_id, _, flags, length = frame
    if can_id > (0x1FFFFFFF if flags & EXT else 0x7FF):
        return False
    if flags & FD:
        return bool(features & F_CAN_FD) and not flags & RTR and length in FD_LENGTHS
    if not features & F_CAN_CLASSIC or (flags & RTR and not features & F_RTR_FRAMES):
        return False
    return length <= 8


def rx_message(frame: Frame) -> bytes:
    can_id, data, flags, length = frame
    return HEADER.pack(MSG_RX, length, 0, 0, 0, flags, can_id) + (b"" if flags & RTR else data)


def _drain() -> None:
    while BUS.receive() is not None:
        pass
    while OTHER.recv(0) is not None:
        pass


class CanRig:
    def __init__(self, features: int) -> None:
        self.rig = Rig([64, 64, 64])
        self.backend = CanBackend(BUS)
        self.backend.acked_features(features)
        self.backend.attach([self.rig.worker], self.rig.vrings)
        self.features = features
        self.started = False
        self.sent: list[Frame] = []  # what the other node must receive, in order
        self.heard: list[Frame] = []  # what the guest must receive, in order
        self.rx: dict[int, int] = {}  # rx head -> writable size

    def request(self, queue: int, readable: list[bytes], room: int) -> int | None:
        head = self.rig.post(queue, [r for r in readable if r], [room] if room else [])
        if head is None:
            return None
        self.rig.publish(queue)
        self.backend.handle_queue(self.rig.vrings[queue])
        used = dict(self.rig.used(queue))
        check(list(used) == [head], f"queue {queue}: completed {used}, posted {head}")
        check(used[head] == min(room, 1), f"request {head}: used {used[head]} of room {room}")
        result = self.rig.written(queue, head, 1)[0] if room else None
        check(result in (None, 0, 1), f"result {result}")
        del self.rig.writable[queue][head]
        return result

    def control(self, message: bytes, room: int) -> None:
        result = self.request(CTRLQ, [message], room)
        kind = struct.unpack("<H", message)[0] if len(message) == 2 else None
        ok = kind in (START, STOP)
        check(result is None or result == (0 if ok else 1), f"control {message!r}: {result}")
        if ok:
            self.started = kind == START
            if not self.started:
                self.heard.clear()  # a stopped controller drops what it held

    def transmit(self, fdp: atheris.FuzzedDataProvider) -> None:
        flags = (EXT if fdp.ConsumeBool() else 0) | (FD if fdp.ConsumeIntInRange(0, 3) == 0 else 0)
        flags |= RTR if fdp.ConsumeIntInRange(0, 3) == 0 else 0
        can_id = fdp.PickValueInList(IDS)
        length = fdp.PickValueInList(LENGTHS)
        sdu = 0 if flags & RTR and fdp.ConsumeBool() else length
        data = fdp.ConsumeBytes(sdu).ljust(sdu, b"\x55")
        fields = [MSG_TX, length, 0, 0, 0, flags, can_id]
        broken = fdp.ConsumeIntInRange(0, 7) == 0
        if broken:
            index = fdp.ConsumeIntInRange(0, 6)
            value = fdp.PickValueInList([0, 0x101, 1, 0xFF, 0x1000, 0x10])
            fields[index] = value & 0xFF if index in (2, 3) else value
        request = HEADER.pack(*fields) + data
        if fdp.ConsumeIntInRange(0, 15) == 0:
            request = request[: fdp.ConsumeIntInRange(0, len(request))]
        cut = fdp.ConsumeIntInRange(0, len(request))
        room = fdp.PickValueInList([1, 1, 1, 0, 8])
        msg_type, length, dlc, pad, prio, flags, can_id = (
            HEADER.unpack_from(request) if len(request) >= 16 else (0,) * 7
        )
        sdu = len(request) - 16
        rtr = bool(flags & RTR)
        frame = (can_id, b"" if rtr else request[16:], flags, length)
        ok = (
            self.started
            and 16 <= len(request) <= 16 + 64
            and msg_type == MSG_TX
            and dlc == pad == prio == 0
            and not flags & ~(EXT | FD | RTR)
            and (sdu == length or (rtr and sdu == 0))
            and valid(frame, self.features)
        )
        result = self.request(TXQ, [request[:cut], request[cut:]], room)
        check(result is None or result == (0 if ok else 1), f"TX {request.hex()}: {result}")
        if ok:
            self.sent.append(frame)

    def hear(self, fdp: atheris.FuzzedDataProvider) -> None:
        flags = (EXT if fdp.ConsumeBool() else 0) | (FD if fdp.ConsumeIntInRange(0, 3) == 0 else 0)
        if not flags & FD and fdp.ConsumeIntInRange(0, 3) == 0:  # python-can has no FD RTR
            flags |= RTR
        can_id = fdp.PickValueInList(IDS[:-1])  # python-can keeps ids to 29 bits
        length = fdp.PickValueInList(LENGTHS[:-1])
        data = b"" if flags & RTR else fdp.ConsumeBytes(length).ljust(length, b"\xaa")
        OTHER.send(
            can.Message(
                arbitration_id=can_id,
                is_extended_id=bool(flags & EXT),
                is_fd=bool(flags & FD),
                is_remote_frame=bool(flags & RTR),
                dlc=length,
                data=data,
                check=False,
            )
        )
        frame = (can_id, data, flags, length)
        if self.started and valid(frame, self.features):
            self.heard.append(frame)

    def post_rx(self, size: int) -> None:
        head = self.rig.post(RXQ, [], [size])
        if head is not None:
            self.rx[head] = size
        self.rig.publish(RXQ)
        self.backend.handle_queue(self.rig.vrings[RXQ])

    def reap_rx(self) -> None:
        for head, length in self.rig.used(RXQ):
            check(head in self.rx, f"rx buffer {head} completed twice")
            size = self.rx.pop(head)
            got = self.rig.written(RXQ, head, length)
            if length == 0:
                want = rx_message(self.heard[0]) if self.heard else b""
                check(len(want) > size, f"rx buffer {head} of {size} returned empty")
                continue
            check(self.heard, f"rx buffer {head} got {got.hex()}, nothing was due")
            want = rx_message(self.heard.pop(0))
            check(got == want, f"rx buffer {head}: {got.hex()}, expected {want.hex()}")

    def other_received(self) -> None:
        while (message := OTHER.recv(0)) is not None:
            check(self.sent, f"the other node got {message}, nothing was sent")
            can_id, data, flags, length = self.sent.pop(0)
            got = (
                message.arbitration_id,
                bytes(message.data) if not message.is_remote_frame else b"",
                (EXT if message.is_extended_id else 0)
                | (FD if message.is_fd else 0)
                | (RTR if message.is_remote_frame else 0),
                message.dlc,
            )
            check(got == (can_id, data, flags, length), f"the other node got {got}")

    def close(self) -> None:
        self.backend.close()
        self.rig.close()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    _drain()
    every = F_CAN_CLASSIC | F_RTR_FRAMES | F_CAN_FD
    features = STANDARD_FEATURES | fdp.PickValueInList(
        [every, F_CAN_CLASSIC, F_CAN_FD, F_CAN_CLASSIC | F_CAN_FD, 0]
    )
    c = CanRig(features)
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 16)):
            action = fdp.ConsumeIntInRange(0, 9)
            if action <= 3:
                c.transmit(fdp)
            elif action <= 5:
                c.hear(fdp)
            elif action <= 7:
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    c.post_rx(fdp.PickValueInList([80, 80, 16, 24, 8, 0x100]))
            elif action == 8:
                c.control(struct.pack("<H", fdp.PickValueInList([START, START, STOP])), 1)
            else:
                message = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3))
                c.control(message, fdp.PickValueInList([1, 0]))
            c.rig.worker.step()
            c.reap_rx()
            c.other_received()
            check(not c.backend.status & STATUS_BUSOFF, "the controller went BUSOFF")
        check(not c.sent, f"the other node never got {c.sent}")
        # START, one frame each way.
        if c.features & F_CAN_CLASSIC:
            c.control(struct.pack("<H", START), 1)
            for _ in range(len(c.heard) + 1):
                c.post_rx(80)
            c.rig.worker.step()
            c.reap_rx()
            check(not c.heard, f"frames still wait with buffers posted: {c.heard}")
            OTHER.send(can.Message(arbitration_id=0x42, is_extended_id=False, data=b"hi"))
            c.heard.append((0x42, b"hi", 0, 2))
            c.rig.worker.step()
            c.reap_rx()
            check(not c.heard, "the good frame from the other node did not arrive")
            request = HEADER.pack(MSG_TX, 2, 0, 0, 0, 0, 0x43) + b"ok"
            check(c.request(TXQ, [request], 1) == 0, "the good TX frame was refused")
            c.sent.append((0x43, b"ok", 0, 2))
            c.other_received()
            check(not c.sent, "the good TX frame did not reach the other node")
    finally:
        c.close()
