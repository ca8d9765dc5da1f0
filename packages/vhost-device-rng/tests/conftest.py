from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RngDaemon = Callable[..., Path]


@pytest.fixture
def rng_daemon(tmp_path: Path) -> Iterator[RngDaemon]:
    """Start `vhost-device-rng` (the real CLI, as a process) with extra flags; returns
    the base socket path (sockets are <base>0..). Stopped with SIGTERM afterwards, and
    the test fails if it did not exit cleanly."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> Path:
        base = tmp_path / f"rng{len(procs)}.sock"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "vhost_device_rng.main", "-s", str(base), *flags]
            )
        )
        return base

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
