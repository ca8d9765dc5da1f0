"""The device through a real socket, driven by the core's Python frontend (the VMM side)."""

from __future__ import annotations

from pathlib import Path

from vhost_device_template.device import LoopbackBackend
from vhost_device_template.host import FileSink, MemorySink
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import connected_frontend


def _request(frontend: Frontend, payload: bytes, room: int = 16) -> tuple[int, bytes]:
    """One request on queue 0: the used length and what landed in its output buffer."""
    (queue,) = frontend.queues
    assert frontend.ram is not None
    src, dst = frontend.ram.alloc(len(payload)), frontend.ram.alloc(room)
    frontend.ram.memory.write(src, payload)
    queue.driver.add([(src, len(payload), False), (dst, room, True)])
    queue.publish()
    (used,) = queue.wait_used(1)
    return used[1], frontend.ram.memory.read(dst, used[1])


def test_output_gets_the_input_and_the_sink_a_copy(tmp_path: Path) -> None:
    sink = MemorySink()
    with connected_frontend(lambda: LoopbackBackend(sink), tmp_path / "t.sock") as frontend:
        frontend.start_device(1, 128)
        assert _request(frontend, b"hello") == (5, b"hello")
        assert _request(frontend, b", world") == (7, b", world")
    assert sink.contents() == b"hello, world"


def test_the_memory_sink_keeps_the_newest_bytes() -> None:
    sink = MemorySink(limit=4)
    sink.write(b"abc")
    sink.write(b"def")
    assert sink.contents() == b"cdef"


def test_malformed_chain_is_completed_empty(tmp_path: Path) -> None:
    sink = MemorySink()
    with connected_frontend(lambda: LoopbackBackend(sink), tmp_path / "t.sock") as frontend:
        (queue,) = frontend.start_device(1, 128)
        head = queue.driver.add([(1 << 44, 8, False)])  # outside guest memory
        queue.publish()
        assert queue.wait_used(1) == [(head, 0)]
    assert sink.contents() == b""


def test_a_failing_host_fails_the_request_not_the_daemon(tmp_path: Path) -> None:
    sink = FileSink(Path("/dev/full"))  # every write: ENOSPC, from the real kernel
    try:
        with connected_frontend(lambda: LoopbackBackend(sink), tmp_path / "t.sock") as frontend:
            frontend.start_device(1, 128)
            assert _request(frontend, b"lost") == (0, b"")
            assert _request(frontend, b"lost again") == (0, b"")
    finally:
        sink.close()
