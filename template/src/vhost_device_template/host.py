"""The host side behind a small interface: a real implementation and a shipped double,
chosen with `--sink`, so tests and users can run without the real one."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

from .args import LoopbackConfig
from .errors import SinkError


class Sink(Protocol):
    """Where the guest's bytes go; called from every connection's worker thread."""

    def write(self, data: bytes) -> None:
        """Take all of `data`, or raise SinkError."""

    def close(self) -> None: ...


class FileSink:
    """The real one: appends every request to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SinkError(f"cannot open {path}: {exc.strerror}", path) from exc

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SinkError(f"cannot write to {self.path}: {exc.strerror}", self.path) from exc

    def close(self) -> None:
        os.close(self._fd)


class MemorySink:
    """The double: keeps the newest `limit` bytes, for tests (and users) to read."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._data += data
            del self._data[: max(0, len(self._data) - self.limit)]

    def contents(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def close(self) -> None:
        pass


def open_sink(config: LoopbackConfig) -> Sink:
    return FileSink(config.output) if config.output is not None else MemorySink()
