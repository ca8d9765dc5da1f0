"""The template device through a real socket, driven by the core's Python frontend."""

from __future__ import annotations

from pathlib import Path

from vhost_device_template.device import LoopbackBackend
from vhost_user_core.testing.harness import connected_frontend


def test_loopback_copies_input_to_output(tmp_path: Path) -> None:
    with connected_frontend(LoopbackBackend, tmp_path / "t.sock") as frontend:
        (queue,) = frontend.start_device(1, 128)
        assert frontend.ram is not None
        src, dst = frontend.ram.alloc(5), frontend.ram.alloc(16)
        frontend.ram.memory.write(src, b"hello")
        queue.driver.add([(src, 5, False), (dst, 16, True)])
        queue.publish()
        assert queue.wait_used(1)[0][1] == 5
        assert frontend.ram.memory.read(dst, 5) == b"hello"


def test_malformed_chain_is_completed_empty(tmp_path: Path) -> None:
    with connected_frontend(LoopbackBackend, tmp_path / "t.sock") as frontend:
        (queue,) = frontend.start_device(1, 128)
        head = queue.driver.add([(1 << 44, 8, False)])
        queue.publish()
        assert queue.wait_used(1) == [(head, 0)]
