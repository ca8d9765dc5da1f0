"""The entropy source: one open file shared by all sockets, one read per batch."""

from __future__ import annotations

import logging
import os
import threading

from .errors import SourceError

log = logging.getLogger(__name__)


class EntropySource:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(
                path, f"cannot open rng source {path}: {exc.strerror}", exc.errno
            ) from exc
        self._lock = threading.Lock()
        self.exhausted = False

    def read_into(self, buffer: bytearray | memoryview) -> int:
        """Fill `buffer` as far as the source allows; returns the byte count.

        A regular file can run out: that is logged once and later reads give 0, so
        the device stops serving rather than replaying old bytes.
        """
        view = memoryview(buffer)
        filled = 0
        with self._lock:
            while filled < len(view) and not self.exhausted:
                try:
                    n = os.readv(self._fd, [view[filled:]])
                except InterruptedError:
                    continue
                except OSError as exc:
                    raise SourceError(
                        self.path, f"reading {self.path}: {exc.strerror}", exc.errno
                    ) from exc
                if n == 0:
                    self.exhausted = True
                    log.error(
                        "rng source %s is exhausted; no more entropy will be served", self.path
                    )
                filled += n
        return filled

    def fileno(self) -> int:
        """The open source, for a reader in C (`FillFromFd`)."""
        return self._fd

    def close(self) -> None:
        os.close(self._fd)
