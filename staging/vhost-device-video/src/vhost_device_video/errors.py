"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── DeviceError             anything vhost_device_video raises on purpose
        ├── ConfigError         flags that do not fit together (before any socket opens)
        └── V4l2Error           the V4L2 device failed (also a BackendError: host-side)

A V4l2Error carries the failing `path` and `errno`, so a handler can tell a missing
device from one that refused a format. A malformed guest command is not an error of
this tree: `protocol.CommandError` carries the draft's response code back to it.
"""

from __future__ import annotations

from pathlib import Path

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_video raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """The command line asks for something inconsistent."""


class V4l2Error(DeviceError, BackendError):
    """The V4L2 device at `path` failed (`errno` from the kernel, 0 if not a syscall)."""

    def __init__(self, what: str, path: Path | None = None, errno: int = 0) -> None:
        super().__init__(what)
        self.path = path
        self.errno = errno
