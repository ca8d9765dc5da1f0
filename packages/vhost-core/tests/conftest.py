from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from echo_backend import EchoBackend

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import running_daemon


@pytest.fixture
def echo_socket(tmp_path: Path) -> Iterator[Path]:
    """An in-process echo daemon listening on a fresh socket."""
    EchoBackend.instances.clear()
    path = tmp_path / "echo.sock"
    with running_daemon(EchoBackend, path):
        yield path


@pytest.fixture
def echo(echo_socket: Path) -> Iterator[Frontend]:
    with Frontend.connect(echo_socket) as frontend:
        yield frontend
