"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── DeviceError             anything vhost_device_scsi raises on purpose
        ├── ConfigError         flags that do not fit together (before any socket opens)
        └── ImageError          an image cannot be opened or used
                                (also a BackendError: a host-side failure)

An ImageError carries the image's `path` (None for a `mem:` double).
"""

from __future__ import annotations

from pathlib import Path

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_scsi raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """The command line asks for something inconsistent."""


class ImageError(DeviceError, BackendError):
    """The image at `path` cannot be opened or used."""

    def __init__(self, what: str, path: Path | None = None) -> None:
        super().__init__(what)
        self.path = path
