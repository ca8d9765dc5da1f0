"""Fixtures: a daemon thread serving one VideoBackend on the null backend, and the
draft's driver on its frontend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from video_driver import Driver

from vhost_device_video.device import VideoBackend
from vhost_device_video.null import NullBackend
from vhost_device_video.protocol import QUEUE_SIZE
from vhost_user_core.testing.harness import connected_frontend


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    host = NullBackend()
    with connected_frontend(lambda: VideoBackend(host), tmp_path / "v.sock") as frontend:
        frontend.start_device(2, QUEUE_SIZE, memory_size=64 << 20)
        yield Driver(frontend)
