"""Kicks served in C: `FillFromFd` through a real daemon and the frontend, and the C
worker loop's readers, writers, timers and queued calls."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhost_user_core import (
    STANDARD_FEATURES,
    FillFromFd,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import running_daemon, wait_idle

DATA = bytes(range(256)) * 4  # what the file the fast path reads holds


class FileBackend(VhostUserBackend):
    """Fills buffers from a file, in C; what comes to Python is recorded and answered
    with nothing, so a test tells the two paths apart."""

    name = "fill-test"
    num_queues = 1
    max_queue_size = 64
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ
    path: Path
    vring: Vring
    instances: list[FileBackend] = []

    def __init__(self) -> None:
        self.fd = os.open(self.path, os.O_RDONLY)
        self.fast = FillFromFd(self.fd)
        self.python: list[tuple[int, str | None]] = []  # (head, error) of each chain
        FileBackend.instances.append(self)

    def fast_path(self, vring: Vring) -> FillFromFd:
        self.vring = vring
        return self.fast

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            self.python += [(chain.head, chain.error) for chain in batch]
            vring.complete(batch, [0] * len(batch))

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Frontend, FrontendQueue, FileBackend]]:
    source = tmp_path / "source"
    source.write_bytes(DATA)
    FileBackend.path = source
    FileBackend.instances.clear()
    with (
        running_daemon(FileBackend, tmp_path / "fill.sock"),
        Frontend.connect(tmp_path / "fill.sock") as frontend,
    ):
        (queue,) = frontend.start_device(1, 64)
        yield frontend, queue, FileBackend.instances[-1]


def post(frontend: Frontend, queue: FrontendQueue, chains: list[list[int]]) -> list[list[int]]:
    """Post chains of writable buffers of the given sizes; returns their GPAs."""
    assert frontend.ram is not None
    gpas = []
    for sizes in chains:
        bufs = [frontend.ram.alloc(n) for n in sizes]
        for gpa, n in zip(bufs, sizes, strict=True):
            frontend.ram.memory.write(gpa, b"\xee" * n)
        queue.driver.add([(gpa, n, True) for gpa, n in zip(bufs, sizes, strict=True)])
        gpas.append(bufs)
    queue.publish()
    return gpas


def read(frontend: Frontend, gpas: list[int], sizes: list[int]) -> bytes:
    assert frontend.ram is not None
    return b"".join(frontend.ram.memory.read(g, n) for g, n in zip(gpas, sizes, strict=True))


def test_every_chain_is_filled_from_the_fd_in_order_without_python(
    filled: tuple[Frontend, FrontendQueue, FileBackend],
) -> None:
    frontend, queue, backend = filled
    chains = [[64], [16, 48], [100]]  # one chain of two descriptors
    gpas = post(frontend, queue, chains)
    used = dict(queue.wait_used(3, 5.0))
    heads = sorted(used)
    assert [used[h] for h in heads] == [64, 64, 100]
    got = b"".join(read(frontend, g, s) for g, s in zip(gpas, chains, strict=True))
    assert got == DATA[:228]
    assert backend.python == []  # nothing reached handle_queue
    assert backend.fast.bytes_filled == 228
    assert backend.fast.enabled


class InflightFileBackend(FileBackend):
    """The same device with INFLIGHT_SHMFD: its ring has inflight records, which
    FillFromFd does not keep (its `keeps_inflight` is off)."""

    name = "fill-inflight-test"
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.INFLIGHT_SHMFD


def test_a_fast_path_that_keeps_no_inflight_records_is_not_used_on_a_ring_with_them(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.write_bytes(DATA)
    InflightFileBackend.path = source
    FileBackend.instances.clear()
    with (
        running_daemon(InflightFileBackend, tmp_path / "fill.sock"),
        Frontend.connect(tmp_path / "fill.sock") as frontend,
    ):
        (queue,) = frontend.start_device(1, 64)
        info, fd = frontend.get_inflight_fd(1, 64)
        frontend.set_inflight_fd(info, fd)
        frontend.start_vring(queue)
        frontend.sync()  # the restart is handled before anything is posted
        backend = FileBackend.instances[-1]
        assert not backend.fast.keeps_inflight
        post(frontend, queue, [[64], [32]])
        assert [length for _, length in queue.wait_used(2, 5.0)] == [0, 0]
        assert len(backend.python) == 2 and backend.fast.bytes_filled == 0
        os.close(fd)


def test_a_short_read_completes_what_came_and_hands_the_rest_to_python(
    filled: tuple[Frontend, FrontendQueue, FileBackend],
) -> None:
    frontend, queue, backend = filled
    first = post(frontend, queue, [[1000]])
    queue.wait_used(1, 5.0)
    chains = [[16], [64], [64]]  # 24 bytes left in the file: 16, then 8, then none
    gpas = post(frontend, queue, chains)
    used = queue.wait_used(3, 5.0)
    assert [length for _, length in used] == [16, 8, 0]
    assert read(frontend, gpas[0], [16]) + read(frontend, gpas[1], [8]) == DATA[1000:]
    assert read(frontend, first[0], [1000]) == DATA[:1000]
    assert len(backend.python) == 1  # only the chain that got nothing
    assert backend.fast.enabled
    wait_idle(backend.vring.worker)
    post(frontend, queue, [[8]])  # at the end of the file: the fast path stands down
    assert queue.wait_used(1, 5.0)[0][1] == 0
    assert not backend.fast.enabled
    assert len(backend.python) == 2


def test_a_malformed_chain_is_left_to_python(
    filled: tuple[Frontend, FrontendQueue, FileBackend],
) -> None:
    frontend, queue, backend = filled
    queue.driver.add([(1 << 40, 64, True)])  # outside guest memory
    queue.publish()
    assert queue.wait_used(1, 5.0)[0][1] == 0
    assert len(backend.python) == 1 and backend.python[0][1] == "buffer outside guest memory"
    assert backend.fast.bytes_filled == 0


def test_the_c_loop_runs_readers_writers_timers_and_queued_calls() -> None:
    worker = Worker("loop-test", threading.RLock())
    seen: list[str] = []
    done = threading.Event()
    r, w = os.pipe()
    os.set_blocking(r, False)

    def readable() -> None:
        seen.append(f"read {os.read(r, 10)!r}")
        worker.remove_reader(r)
        worker.call_later(0.01, lambda: seen.append("late"))
        worker.call_later(0.02, done.set)

    def writable() -> None:
        seen.append("writable")
        worker.remove_writer(w)
        os.write(w, b"x")

    def failing() -> None:
        raise RuntimeError("a device bug")  # logged; the loop goes on

    worker.start()
    try:
        worker.call_later(0.005, lambda: None).cancel()
        worker.call_soon(failing)
        worker.add_reader(r, readable)
        worker.add_writer(w, writable)
        assert done.wait(5.0)
        time.sleep(0.03)  # the cancelled timer had its chance
    finally:
        worker.stop()
        os.close(r)
        os.close(w)
    assert seen == ["writable", "read b'x'", "late"]
