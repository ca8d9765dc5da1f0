"""The device side of a split virtqueue against hostile rings, one case per test.

A `Rig` lays a ring out in guest memory made of regions A and B (contiguous), a hole,
and region C. The driver writes through one mapping, the device reads through another,
as with a real VMM. A malformed chain must come back with an error and no buffers; a
ring-level violation must mark the queue broken; nothing may touch memory outside the
guest's regions, or buffers the driver did not give the device to write.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from vhost_user_core.driver import DriverQueue
from vhost_user_core.errors import QueueError
from vhost_user_core.memory import GuestMemory
from vhost_user_core.virtqueue import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    DescriptorChain,
    Virtqueue,
)

NEXT, WRITE, INDIRECT = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT
SIZE = 0x10000
A, B, HOLE, C = 0x0, 0x10000, 0x20000, 0x30000
RINGS = A  # descriptor table, avail and used ring live at the start of A
DATA = A + 0x8000  # buffers
TABLE = C + 0x100  # indirect tables

LOOP = "chain longer than the queue (or a descriptor loop)"
OUTSIDE = "buffer outside guest memory"


class Rig:
    def __init__(self, size: int = 8, *, event_idx: bool = False) -> None:
        self.fds = []
        self.driver_mem, self.device_mem = GuestMemory(), GuestMemory()
        for gpa in (A, B, C):
            fd = os.memfd_create("rig", os.MFD_CLOEXEC)
            os.ftruncate(fd, SIZE)
            self.fds.append(fd)
            self.driver_mem.add_region(gpa, SIZE, gpa, 0, fd)
            self.device_mem.add_region(gpa, SIZE, gpa, 0, fd)
        d, a, _ = DriverQueue.layout(size)
        self.desc, self.avail, self.used = RINGS, RINGS + d, (RINGS + d + a + 3) & ~3
        self.driver = DriverQueue(
            self.driver_mem, size, self.desc, self.avail, self.used, event_idx
        )
        self.queue = Virtqueue(0, 256)
        self.queue.set_size(size)
        self.queue.set_addresses(self.device_mem, self.desc, self.avail, self.used)
        self.queue.event_idx = event_idx

    def raw_chain(self, descriptors: list[tuple[int, int, int, int]], head: int = 0) -> None:
        """Write (addr, len, flags, next) at indices head, head+1, ... and post `head`."""
        for i, (addr, length, flags, nxt) in enumerate(descriptors):
            self.driver.write_raw_descriptor(head + i, addr, length, flags, nxt)
        self.driver.push_avail(head)
        self.driver.publish()

    def indirect_table(self, gpa: int, descriptors: list[tuple[int, int, int, int]]) -> int:
        for i, (addr, length, flags, nxt) in enumerate(descriptors):
            entry = addr.to_bytes(8, "little") + length.to_bytes(4, "little")
            entry += flags.to_bytes(2, "little") + nxt.to_bytes(2, "little")
            self.driver_mem.write(gpa + 16 * i, entry)
        return 16 * len(descriptors)

    def pop_one(self) -> DescriptorChain:
        batch = self.queue.pop()
        assert len(batch) == 1
        return batch[0]

    def close(self) -> None:
        self.driver_mem.close()
        self.device_mem.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def assert_rejected(chain: DescriptorChain, error: str) -> None:
    assert chain.error == error
    assert chain.readable_len == chain.writable_len == 0
    assert chain.read() == b""
    assert chain.write(b"x" * 64) == 0


# -- well-formed chains ------------------------------------------------------------------


def test_read_and_write_buffers(rig: Rig) -> None:
    rig.driver_mem.write(DATA, b"request")
    rig.driver.add([(DATA, 7, False), (DATA + 64, 16, True)])
    rig.driver.publish()
    chain = rig.pop_one()
    assert (chain.error, chain.readable_len, chain.writable_len) == (None, 7, 16)
    assert chain.read() == b"request"
    assert chain.write(b"response", offset=4) == 8
    assert rig.driver_mem.read(DATA + 64, 12) == bytes(4) + b"response"


def test_buffer_spanning_contiguous_regions_is_served(rig: Rig) -> None:
    rig.driver.add([(B - 8, 16, True)])
    rig.driver.publish()
    chain = rig.pop_one()
    assert chain.error is None and len(chain.writable_views()) == 2
    assert chain.write(b"0123456789abcdef") == 16
    assert rig.driver_mem.read(B - 8, 16) == b"0123456789abcdef"


def test_indirect_chain(rig: Rig) -> None:
    rig.driver_mem.write(DATA, b"in")
    rig.driver.add_indirect(TABLE, [(DATA, 2, False), (DATA + 64, 4, True)])
    rig.driver.publish()
    chain = rig.pop_one()
    assert (chain.error, chain.read(), chain.writable_len) == (None, b"in", 4)


def test_batch_pop_respects_the_limit(rig: Rig) -> None:
    for i in range(5):
        rig.driver.add([(DATA + 64 * i, 8, True)])
    rig.driver.publish()
    assert len(rig.queue.pop(3)) == 3
    assert len(rig.queue.pop()) == 2
    assert len(rig.queue.pop()) == 0


def test_batch_completion_updates_used_once(rig: Rig) -> None:
    heads = [rig.driver.add([(DATA + 64 * i, 8, True)]) for i in range(4)]
    rig.driver.publish()
    batch = rig.queue.pop()
    batch.scatter(b"A" * 8 + b"B" * 4, [8, 4])
    rig.queue.add_used_batch(batch, [8, 4])
    assert rig.driver.get_used() == [(heads[0], 8), (heads[1], 4)]
    assert rig.driver_mem.read(DATA + 64, 4) == b"BBBB"


def test_scatter_refuses_more_than_a_chain_can_take(rig: Rig) -> None:
    rig.driver.add([(DATA, 8, True)])
    rig.driver.publish()
    batch = rig.queue.pop()
    with pytest.raises(ValueError, match="exceed"):
        batch.scatter(bytes(16), [16])
    assert rig.driver_mem.read(DATA, 16) == bytes(16)


# -- hostile descriptors: the chain fails alone -------------------------------------------


def test_address_outside_every_region(rig: Rig) -> None:
    rig.raw_chain([(HOLE + 0x100, 16, WRITE, 0)])
    assert_rejected(rig.pop_one(), OUTSIDE)


def test_address_beyond_all_memory(rig: Rig) -> None:
    rig.raw_chain([(1 << 48, 16, 0, 0)])
    assert_rejected(rig.pop_one(), OUTSIDE)


def test_buffer_straddling_a_region_into_a_hole(rig: Rig) -> None:
    rig.raw_chain([(HOLE - 8, 16, WRITE, 0)])
    assert_rejected(rig.pop_one(), OUTSIDE)
    assert rig.driver_mem.read(HOLE - 8, 8) == bytes(8)


def test_length_overflow_wraps_the_address_space(rig: Rig) -> None:
    rig.raw_chain([(0xFFFF_FFFF_FFFF_FFF0, 0x20, WRITE, 0)])
    assert_rejected(rig.pop_one(), OUTSIDE)


def test_huge_length_from_a_valid_address(rig: Rig) -> None:
    rig.raw_chain([(DATA, 0xFFFF_FFFF, WRITE, 0)])
    assert_rejected(rig.pop_one(), OUTSIDE)


def test_descriptor_loop(rig: Rig) -> None:
    rig.raw_chain([(DATA, 8, NEXT, 1), (DATA + 8, 8, NEXT, 0)])
    assert_rejected(rig.pop_one(), LOOP)


def test_descriptor_pointing_at_itself(rig: Rig) -> None:
    rig.raw_chain([(DATA, 8, NEXT, 0)])
    assert_rejected(rig.pop_one(), LOOP)


def test_chain_longer_than_the_queue(rig: Rig) -> None:
    # Eight-entry queue, sixteen chained entries in an indirect table: no loop, too long.
    table = [(DATA + 8 * i, 8, NEXT, i + 1) for i in range(15)] + [(DATA + 120, 8, 0, 0)]
    length = rig.indirect_table(TABLE, table)
    rig.raw_chain([(TABLE, length, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), LOOP)


def test_an_indirect_table_as_long_as_the_queue_is_accepted(rig: Rig) -> None:
    # Eight-entry queue, eight entries in the table (virtio_scsi: seg_max + 2 of them).
    table = [(DATA + 8 * i, 8, NEXT, i + 1) for i in range(7)] + [(DATA + 56, 8, WRITE, 0)]
    length = rig.indirect_table(TABLE, table)
    rig.raw_chain([(TABLE, length, INDIRECT, 0)])
    chain = rig.pop_one()
    assert chain.error is None and (chain.readable_len, chain.writable_len) == (56, 8)


def test_loop_inside_an_indirect_table(rig: Rig) -> None:
    length = rig.indirect_table(TABLE, [(DATA, 8, NEXT, 1), (DATA, 8, NEXT, 0)])
    rig.raw_chain([(TABLE, length, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), LOOP)


def test_next_index_outside_the_queue(rig: Rig) -> None:
    rig.raw_chain([(DATA, 8, NEXT, 200)])
    assert_rejected(rig.pop_one(), "descriptor index out of range")


def test_next_index_outside_the_indirect_table(rig: Rig) -> None:
    length = rig.indirect_table(TABLE, [(DATA, 8, NEXT, 1), (DATA, 8, NEXT, 5)])
    rig.raw_chain([(TABLE, length, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), "descriptor index out of range")


def test_nested_indirect(rig: Rig) -> None:
    inner = rig.indirect_table(TABLE + 0x100, [(DATA, 8, WRITE, 0)])
    outer = rig.indirect_table(TABLE, [(TABLE + 0x100, inner, INDIRECT, 0)])
    rig.raw_chain([(TABLE, outer, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), "nested indirect descriptor")


@pytest.mark.parametrize("length", [0, 8, 24, 17])
def test_indirect_table_of_bad_size(rig: Rig, length: int) -> None:
    rig.raw_chain([(TABLE, length, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), "indirect table size is zero or not a multiple of 16")


def test_indirect_table_outside_memory(rig: Rig) -> None:
    rig.raw_chain([(HOLE, 32, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), "indirect table outside guest memory")


def test_indirect_table_straddling_into_a_hole(rig: Rig) -> None:
    rig.raw_chain([(HOLE - 16, 32, INDIRECT, 0)])
    assert_rejected(rig.pop_one(), "indirect table outside guest memory")


def test_indirect_descriptor_with_next(rig: Rig) -> None:
    length = rig.indirect_table(TABLE, [(DATA, 8, WRITE, 0)])
    rig.raw_chain([(TABLE, length, INDIRECT | NEXT, 1), (DATA, 8, WRITE, 0)])
    assert_rejected(rig.pop_one(), "indirect descriptor with the NEXT flag")


def test_readable_after_writable(rig: Rig) -> None:
    rig.raw_chain([(DATA, 8, WRITE | NEXT, 1), (DATA + 8, 8, 0, 0)])
    assert_rejected(rig.pop_one(), "device-readable buffer after a device-writable one")


def test_device_cannot_write_into_read_only_buffers(rig: Rig) -> None:
    rig.driver_mem.write(DATA, b"driver's data")
    rig.driver.add([(DATA, 13, False)])
    rig.driver.publish()
    chain = rig.pop_one()
    assert chain.error is None
    assert chain.write(b"overwrite!") == 0
    (view,) = chain.readable_views()
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 0
    assert rig.driver_mem.read(DATA, 13) == b"driver's data"


def test_bad_chain_does_not_spoil_its_batch(rig: Rig) -> None:
    rig.raw_chain([(HOLE, 8, WRITE, 0)], head=0)
    rig.raw_chain([(DATA, 8, WRITE, 0)], head=1)
    bad, good = rig.queue.pop()
    assert bad.error == OUTSIDE and good.error is None and good.writable_len == 8


# -- ring-level violations: the queue is broken until reset -------------------------------


def test_avail_index_jumping_more_than_the_queue_size(rig: Rig) -> None:
    rig.driver.set_avail_idx(9)
    with pytest.raises(QueueError, match="ahead"):
        rig.queue.pop()
    assert rig.queue.broken
    assert len(rig.queue.pop()) == 0
    assert not rig.queue.enable_notification()


def test_head_index_outside_the_ring(rig: Rig) -> None:
    rig.driver.push_avail(8)
    rig.driver.publish()
    with pytest.raises(QueueError, match="head index"):
        rig.queue.pop()
    assert rig.queue.broken
    rig.queue.reset()
    assert not rig.queue.broken and not rig.queue.configured


@pytest.mark.parametrize(
    "desc, avail, used",
    [(HOLE, A + 0x1000, A + 0x2000), (A, C + SIZE - 4, A + 0x2000), (A, A + 0x1000, 1 << 40)],
)
def test_ring_areas_outside_memory(rig: Rig, desc: int, avail: int, used: int) -> None:
    queue = Virtqueue(1, 8)
    with pytest.raises(QueueError, match="not inside guest memory"):
        queue.set_addresses(rig.device_mem, desc, avail, used)
    assert not queue.configured


def test_misaligned_ring(rig: Rig) -> None:
    with pytest.raises(QueueError, match="misaligned"):
        Virtqueue(1, 8).set_addresses(rig.device_mem, A + 8, A + 0x1000, A + 0x2000)


@pytest.mark.parametrize("size", [0, 3, 512])
def test_queue_size_must_be_a_power_of_two_within_the_maximum(size: int) -> None:
    with pytest.raises(QueueError):
        Virtqueue(0, 256).set_size(size)


# -- memory changing under held chains ----------------------------------------------------


def test_held_batch_survives_the_memory_going_away(rig: Rig) -> None:
    rig.driver.add([(B + 16, 8, True)])
    rig.driver.publish()
    batch = rig.queue.pop()
    views = batch[0].writable_views()
    rig.device_mem.remove_region(B, SIZE)
    rig.device_mem.close()
    rig.queue.reset()
    gc.collect()
    assert batch[0].write(b"late") == 4  # into the old mapping: harmless, no crash
    views[0][4:8] = b"view"
    assert os.pread(rig.fds[1], 8, 16) == b"lateview"


# -- notifications ------------------------------------------------------------------------


def test_no_interrupt_flag_suppresses_notification(rig: Rig) -> None:
    head = rig.driver.add([(DATA, 8, True)])
    rig.driver.publish()
    rig.queue.pop()
    rig.driver.set_interrupt_suppressed(True)
    rig.queue.add_used(head, 0)
    assert not rig.queue.needs_notification()
    rig.driver.set_interrupt_suppressed(False)
    rig.queue.add_used(head, 0)
    assert rig.queue.needs_notification()
    assert not rig.queue.needs_notification()  # nothing new since


def test_event_idx_notifies_only_when_used_event_is_crossed() -> None:
    rig = Rig(event_idx=True)
    try:
        heads = [rig.driver.add([(DATA + 8 * i, 8, True)]) for i in range(4)]
        rig.driver.publish()
        batch = rig.queue.pop()
        rig.driver_mem.write_u16(rig.avail + 4 + 2 * 8, 2)  # used_event: interrupt at 3
        rig.queue.add_used(heads[0], 0)
        rig.queue.add_used(heads[1], 0)
        assert not rig.queue.needs_notification()
        rig.queue.add_used_batch(batch, [0, 0])  # entries 3 and 4 cross used_event
        assert rig.queue.needs_notification()
    finally:
        rig.close()


def test_enable_notification_reports_work_that_arrived_meanwhile() -> None:
    rig = Rig(event_idx=True)
    try:
        rig.queue.disable_notification()
        assert not rig.queue.enable_notification()
        avail_event = rig.used + 4 + 8 * 8
        assert rig.driver_mem.read_u16(avail_event) == 0  # kick me at the next entry
        rig.driver.add([(DATA, 8, True)])
        assert rig.driver.publish()  # the driver is told to kick
        assert rig.queue.enable_notification()
    finally:
        rig.close()


def test_no_notify_flag_without_event_idx(rig: Rig) -> None:
    rig.queue.disable_notification()
    rig.driver.add([(DATA, 8, True)])
    assert not rig.driver.publish()  # VIRTQ_USED_F_NO_NOTIFY: no kick wanted
    assert rig.queue.enable_notification()
    rig.queue.pop()
    rig.driver.add([(DATA, 8, True)])
    assert rig.driver.publish()
