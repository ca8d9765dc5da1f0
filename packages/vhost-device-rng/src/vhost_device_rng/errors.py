"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── RngError                anything vhost_device_rng raises on purpose
        └── SourceError         the entropy source cannot be opened or read
                                (also a BackendError: a host-side failure)

A handler gets the failing `path` and the `errno` from a SourceError, not only its text.
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class RngError(VhostUserError):
    """Base of every error vhost_device_rng raises on purpose."""


class SourceError(RngError, BackendError):
    """The entropy source `path` could not be opened or read (`errno` says why)."""

    def __init__(self, path: str, what: str, errno: int | None = None) -> None:
        super().__init__(what)
        self.path = path
        self.errno = errno
