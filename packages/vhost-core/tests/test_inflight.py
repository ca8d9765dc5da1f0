"""Inflight I/O tracking (INFLIGHT_SHMFD): the region's bookkeeping, and a backend that
completes out of order losing nothing across a reconnect on the same inflight memfd,
the way QEMU's vhost-user-scsi/blk resume after a backend crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vhost_user_core import ProtocolError, ProtocolFeature, VhostUserBackend, Vring
from vhost_user_core.frontend import Frontend
from vhost_user_core.inflight import InflightRegion, queue_region_size
from vhost_user_core.testing.harness import running_daemon
from vhost_user_core.virtqueue import DescriptorChain


def _region(queue_size: int = 8) -> InflightRegion:
    return InflightRegion.create(1, queue_size)


def test_a_fresh_region_is_initialised_at_the_first_start() -> None:
    region = _region()
    queue = region.queues[0]
    assert queue.version == 0
    assert queue.recover(used_idx=5, ring_size=8) == []
    assert (queue.version, queue.used_idx) == (1, 5)
    region.close()


def test_inflight_heads_come_back_oldest_first() -> None:
    region = _region()
    queue = region.queues[0]
    queue.recover(0, 8)
    queue.popped([3, 1, 6])
    queue.popped([2])
    queue.completing([1])
    queue.completed([1], used_idx=1)
    assert queue.recover(used_idx=1, ring_size=8) == [3, 6, 2]
    region.close()


def test_a_crash_between_used_index_and_region_update_is_repaired() -> None:
    """The used ring already shows the batch (idx 2) but the region's entries were not
    cleared yet: recovery clears exactly that batch, found from last_batch_head."""
    region = _region()
    queue = region.queues[0]
    queue.recover(0, 8)
    queue.popped([4, 5, 7])
    queue.completing([5, 7])  # ... the used index moves to 2, then the backend dies
    assert queue.recover(used_idx=2, ring_size=8) == [4]
    assert queue.used_idx == 2
    assert queue.settled == 2  # 5 and 7 were answered: cleared, not resubmitted
    region.close()


def test_an_inflight_head_outside_the_ring_is_refused() -> None:
    region = _region(16)
    queue = region.queues[0]
    queue.recover(0, 16)
    queue.popped([12])
    with pytest.raises(ProtocolError, match="outside a 8-entry ring"):
        queue.recover(0, 8)
    region.close()


def test_a_region_too_small_for_its_queues_is_refused() -> None:
    fd = os.memfd_create("t")
    os.ftruncate(fd, 64)
    try:
        with pytest.raises(ProtocolError, match="needed"):
            InflightRegion(fd, 64, 0, 2, 128)
    finally:
        os.close(fd)
    assert queue_region_size(128) == 2048 + 64


class Holder(VhostUserBackend):
    """Completes a request only once the test says so (its first byte), so requests
    are in flight, and complete out of order, when the connection drops."""

    name = "holder"
    num_queues = 1
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.INFLIGHT_SHMFD
    seen: list[list[int]] = []

    def __init__(self) -> None:
        self.held: list[DescriptorChain] = []
        self.seen.append([])

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            for chain in batch:
                tag = chain.read(1)
                self.seen[-1].append(tag[0])
                if tag == b"!":  # complete at once
                    vring.complete_one(chain.head, chain.write(b"done"))
                else:
                    self.held.append(chain)
                    if tag == b"f":  # flush everything held, newest first
                        for held in reversed(self.held):
                            vring.complete_one(held.head, held.write(b"late"))
                        self.held.clear()


def _post(frontend: Frontend, tag: bytes) -> int:
    assert frontend.ram is not None
    ram = frontend.ram
    src, dst = ram.alloc(1), ram.alloc(4)
    ram.memory.write(src, tag)
    head = frontend.queues[0].driver.add([(src, 1, False), (dst, 4, True)])
    frontend.queues[0].publish()
    return head


def test_requests_in_flight_survive_a_reconnect(tmp_path: Path) -> None:
    Holder.seen = []
    sock = tmp_path / "t.sock"
    with running_daemon(Holder, sock):
        first = Frontend.connect(sock)
        first.negotiate()
        (queue,) = first.start_device(1, 8, memory_size=1 << 20)
        info, fd = first.get_inflight_fd(1, 8)
        assert info.mmap_size == queue_region_size(8) and info.mmap_offset == 0
        first.set_inflight_fd(info, fd)
        first.start_vring(queue)  # QEMU sets the region before it starts the rings
        a, b, c = _post(first, b"a"), _post(first, b"!"), _post(first, b"c")
        assert queue.wait_used(1) == [(b, 4)]
        ram, first.ram, first.queues = first.ram, None, []
        first.close()  # the backend is gone with a and c in flight

        second = Frontend.connect(sock)
        second.negotiate()
        assert ram is not None
        second.ram, second.queues = ram, [queue]
        second.set_mem_table([ram.region()], [ram.fd])
        second.set_inflight_fd(info, fd)
        # QEMU restores the base from the used index after a crash.
        second.start_vring(queue, base=1)
        d = _post(second, b"f")
        used = queue.wait_used(3)
        assert sorted(used) == sorted([(a, 4), (c, 4), (d, 4)])
        assert Holder.seen[-1] == [ord("a"), ord("c"), ord("f")]  # resubmitted first
        second.close()
        os.close(fd)


def test_without_the_feature_inflight_requests_are_refused(tmp_path: Path) -> None:
    class Plain(VhostUserBackend):
        num_queues = 1

        def handle_queue(self, vring: Vring) -> None:
            pass

    with running_daemon(Plain, tmp_path / "p.sock"), Frontend.connect(tmp_path / "p.sock") as f:
        info = f.negotiate()
        assert not info.protocol_features & ProtocolFeature.INFLIGHT_SHMFD
        with pytest.raises(ProtocolError):
            f.get_inflight_fd(1, 8)


def test_inflight_shape_beyond_the_device_is_refused(tmp_path: Path) -> None:
    Holder.seen = []
    with running_daemon(Holder, tmp_path / "h.sock"), Frontend.connect(tmp_path / "h.sock") as f:
        f.negotiate()
        with pytest.raises(ProtocolError):
            f.get_inflight_fd(3, 8)  # the device has one queue
        info, fd = f.get_inflight_fd(1, 8)
        os.close(fd)
        assert info.num_queues == 1
