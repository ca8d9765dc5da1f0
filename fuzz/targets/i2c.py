"""vhost-device-i2c's request queue: fuzzed requests (out header address and flags,
write data, read room, the status byte in its own or a shared descriptor, headers cut
short, buffers outside memory) chained with FAIL_NEXT into groups, on two simulated
buses of 24c02 EEPROMs, and the queue stopped with a group still open.

Invariants:
- nothing but VhostUserError escapes `handle_queue` or `queue_stopped`;
- every request is completed exactly once, by the end of its group or when the queue
  stops, with the spec's used length (read data plus the status byte; the status byte
  alone; 0 for a chain with no status byte to write) and status OK or ERR;
- a group goes to one bus as one transfer, all or nothing: the data each read gets and
  the EEPROMs' contents follow a model of the group rules (a malformed request fails
  alone and ends the group before it; an unlisted address or a group across buses
  fails the whole group) and of the 24c02 (the first written byte sets the offset);
- afterwards a write then a read of one EEPROM byte is served.
"""

from __future__ import annotations

import struct

import atheris
from harness import Rig, check

from vhost_device_i2c.device import I2cBackend
from vhost_device_i2c.host import EEPROM_SIZE, BusMap, SimBus
from vhost_device_i2c.requests import (
    VIRTIO_I2C_FLAGS_FAIL_NEXT,
    VIRTIO_I2C_FLAGS_M_RD,
    VIRTIO_I2C_MSG_ERR,
    VIRTIO_I2C_MSG_OK,
)

QUEUE = 64
BUS_A, BUS_B = (0x50, 0x51), (0x20,)
ADDRESSES = [*BUS_A, *BUS_B, 0x10, 0x7F]  # 0x10, 0x7f: not listed


class Model:
    """The sim EEPROMs as the guest should see them."""

    def __init__(self) -> None:
        self.cells = {a: bytearray(EEPROM_SIZE) for a in (*BUS_A, *BUS_B)}
        self.offset = dict.fromkeys(self.cells, 0)

    def transfer(self, group: list[tuple[int, bool, bytes, int]]) -> list[bytes] | None:
        bus = {a in BUS_A for a, *_ in group}
        if any(a not in self.cells for a, *_ in group) or len(bus) != 1:
            return None
        out = []
        for addr, read, data, length in group:
            if read:
                o = self.offset[addr]
                out.append(bytes(self.cells[addr][(o + i) % EEPROM_SIZE] for i in range(length)))
                self.offset[addr] = (o + length) % EEPROM_SIZE
            else:
                if data:
                    self.offset[addr] = data[0]
                    for byte in data[1:]:
                        self.cells[addr][self.offset[addr]] = byte
                        self.offset[addr] = (self.offset[addr] + 1) % EEPROM_SIZE
                out.append(b"")
        return out


class I2cRig:
    def __init__(self) -> None:
        self.rig = Rig([QUEUE])
        self.buses = BusMap([(SimBus(BUS_A, "a"), BUS_A), (SimBus(BUS_B, "b"), BUS_B)])
        self.backend = I2cBackend(self.buses)
        self.model = Model()
        #: head -> what the device must answer: (used length, status, read data), None
        #: while its group is open.
        self.expect: dict[int, tuple[int, int | None, bytes] | None] = {}
        self.group: list[tuple[int, tuple[int, bool, bytes, int]]] = []
        self.status_at: dict[int, int] = {}  # head -> offset of the status byte

    def post(self, fdp: atheris.FuzzedDataProvider) -> None:
        rig = self.rig
        kind = fdp.ConsumeIntInRange(0, 15)
        addr = fdp.PickValueInList(ADDRESSES)
        flags = (
            fdp.ConsumeInt(4) & 0xFFFFFFFF
            if kind == 15
            else (VIRTIO_I2C_FLAGS_FAIL_NEXT if fdp.ConsumeBool() else 0)
            | (VIRTIO_I2C_FLAGS_M_RD if fdp.ConsumeBool() else 0)
        )
        header = struct.pack("<HHI", (addr << 1) | fdp.ConsumeIntInRange(0, 1), 0, flags)
        read = bool(flags & VIRTIO_I2C_FLAGS_M_RD)
        data = b"" if read and kind != 14 else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
        length = fdp.ConsumeIntInRange(0, 300) if read else 0
        if kind == 13:  # a buffer outside guest memory
            head = rig.post_raw(0, [(0xFFFF_0000_0000, 9, False), (0xFFFF_0001_0000, 1, True)])
            if head is not None:
                self._malformed(head, 0)
            return
        if kind == 12:  # a short header, nothing after it
            header, data = header[: fdp.ConsumeIntInRange(0, 7)], b""
        readable = [header + data]
        if kind == 11 and len(readable[0]) > 1:  # split anywhere
            cut = fdp.ConsumeIntInRange(1, len(readable[0]) - 1)
            readable = [readable[0][:cut], readable[0][cut:]]
        if kind == 10:
            writable = []  # no status byte at all
        elif kind == 9:
            writable = [length + 1]  # data and status in one descriptor
        elif read:
            writable = [length, 1] if length else [1]
        else:
            writable = [1 + fdp.ConsumeIntInRange(0, 1) * fdp.ConsumeIntInRange(1, 8)]
        head = rig.post(0, [r for r in readable if r], writable)
        if head is None:
            return
        room = sum(writable)
        if not room:
            self._malformed(head, 0)
            return
        self.status_at[head] = room - 1
        problem = len(header) < 8 or (read and bool(data)) or (not read and room != 1)
        if problem:
            self._malformed(head, 1)
            return
        self.expect[head] = None
        self.group.append((head, (addr, read, data, room - 1)))
        if not flags & VIRTIO_I2C_FLAGS_FAIL_NEXT:
            self._flush()

    def _malformed(self, head: int, room: int) -> None:
        self._flush()
        self.expect[head] = (room, VIRTIO_I2C_MSG_ERR if room else None, b"")

    def _flush(self) -> None:
        group, self.group = self.group, []
        if not group:
            return
        results = self.model.transfer([m for _, m in group])
        for i, (head, (_, read, _, length)) in enumerate(group):
            if results is None:
                self.expect[head] = (1, VIRTIO_I2C_MSG_ERR, b"")
            else:
                self.expect[head] = (length + 1 if read else 1, VIRTIO_I2C_MSG_OK, results[i])

    def stop(self) -> None:
        """GET_VRING_BASE: the open group fails."""
        for head, _ in self.group:
            self.expect[head] = (1, VIRTIO_I2C_MSG_ERR, b"")
        self.group = []
        self.backend.queue_stopped(self.rig.vrings[0])

    def reap(self) -> None:
        for head, used in self.rig.used(0):
            check(head in self.expect, f"request {head} completed twice or never posted")
            want = self.expect.pop(head)
            check(want is not None, f"request {head} completed before the end of its group")
            assert want is not None
            length, status, data = want
            check(used == length, f"request {head}: used {used}, expected {length}")
            if status is not None:
                written = self.rig.written(0, head, self.status_at[head] + 1)
                check(written[-1] == status, f"request {head}: status {written[-1]}")
                check(written[: len(data)] == data, f"request {head}: read data differs")
            del self.rig.writable[0][head]

    def close(self) -> None:
        self.buses.close()
        self.rig.close()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    i2c = I2cRig()
    vring = i2c.rig.vrings[0]
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 8)):  # at most 64 small chains: no reuse
            for _ in range(fdp.ConsumeIntInRange(0, 8)):
                i2c.post(fdp)
            i2c.rig.publish(0)
            i2c.backend.handle_queue(vring)
            if fdp.ConsumeIntInRange(0, 7) == 0:
                i2c.stop()
            i2c.reap()
        open_group = {h for h, _ in i2c.group}
        check(set(i2c.expect) == open_group, f"unanswered: {set(i2c.expect) - open_group}")
        i2c.stop()
        i2c.reap()
        check(not i2c.expect, f"held after the queue stopped: {sorted(i2c.expect)}")
        # A good write then read of one byte.
        i2c.rig.reset_scratch()
        w = i2c.rig.post(0, [struct.pack("<HHI", 0x50 << 1, 0, 0), b"\x07\x5a"], [1])
        r = i2c.rig.post(0, [struct.pack("<HHI", 0x50 << 1, 0, 0), b"\x07"], [1])
        rd = i2c.rig.post(0, [struct.pack("<HHI", 0x50 << 1, 0, VIRTIO_I2C_FLAGS_M_RD)], [1, 1])
        check(None not in (w, r, rd), "no room for the good requests")
        i2c.rig.publish(0)
        i2c.backend.handle_queue(vring)
        used = dict(i2c.rig.used(0))
        check(used == {w: 1, r: 1, rd: 2}, f"good requests: {used}")
        check(i2c.rig.written(0, rd, 2) == b"\x5a\x00", "the good read")  # type: ignore[arg-type]
    finally:
        i2c.close()
