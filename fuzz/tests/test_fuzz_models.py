"""The targets' own checks, on cases their fuzzed inputs reach only rarely: a model that
disagrees with the code on a legal input would report a false finding, one that agrees
with a bug would hide it."""

from __future__ import annotations

import struct
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import InvariantError  # noqa: E402
from targets import input_events, virtqueue  # noqa: E402

from vhost_user_core.virtqueue import Virtqueue  # noqa: E402


def _indirect_chain(size: int, entries: int) -> tuple[virtqueue.Model, Virtqueue]:
    """Head 0 points at an indirect table of `entries` linked buffers: the model's
    verdict, and the queue the Cython walk reads it from."""
    vq = virtqueue
    image = [bytearray(p) for p in vq._PATTERN]
    table = vq.INDIRECT_GPA
    vq._write(vq.DESC_GPA, vq.DESC.pack(table, 16 * entries, vq.F_INDIRECT, 0), image)
    for i in range(entries):
        flags = vq.F_NEXT if i + 1 < entries else 0
        vq._write(table + 16 * i, vq.DESC.pack(0x2000 + 8 * i, 8, flags, i + 1), image)
    vq._write(vq.AVAIL_GPA, struct.pack("<HHH", 0, 1, 0), image)
    vq._write(vq.USED_GPA, bytes(4 + 8 * size), image)
    for m, img in zip(vq._maps, image, strict=True):
        m[:] = img
    queue = Virtqueue(0, 256)
    queue.set_size(size)
    queue.set_addresses(vq._memory([0, 1, 2]), vq.DESC_GPA, vq.AVAIL_GPA, vq.USED_GPA)
    return vq.model_walk([0, 1, 2], image, size, 0), queue


@pytest.mark.parametrize("entries", [1, 7, 8, 9])
def test_virtqueue_model_does_not_count_the_indirect_entry(entries: int) -> None:
    # The model counted the descriptor pointing at the table as one of the chain's, so a
    # table of Queue Size entries (legal, and what Linux's virtio_scsi sends) was "too
    # long" to it while the walk served it: a false finding waiting for its input.
    model, queue = _indirect_chain(8, entries)
    (chain,) = queue.pop()
    too_long = "chain longer than the queue (or a descriptor loop)"
    assert model[0] == chain.error == (too_long if entries > 8 else None)
    if entries <= 8:
        assert len(model[1]) == len(chain.readable_views()) == entries
        assert chain.readable_len == 8 * entries


def test_input_events_waits_on_the_eventfd() -> None:
    # The target polled with 0.2 ms sleeps; it waits on the device's eventfd now, so an
    # injection from another thread wakes it and nothing at all is a prompt finding.
    input_events.SIM.read()
    later = threading.Timer(0.05, input_events.SIM.inject, [[(1, 30, 1), input_events.MARK]])
    later.start()
    assert input_events.wait_for_mark(5) == [(1, 30, 1), input_events.MARK]
    later.join()
    with pytest.raises(InvariantError, match="no mark"):
        input_events.wait_for_mark(0.01)
