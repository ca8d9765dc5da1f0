"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── DeviceError             anything vhost_device_template raises on purpose
        ├── ConfigError         flags that do not fit together (before any socket opens)
        └── SinkError           the host sink cannot take the guest's bytes
                                (also a BackendError: a host-side failure)

A handler gets the failing sink's `path` (None for the in-memory double) from a
SinkError, not only its text.
"""

from __future__ import annotations

from pathlib import Path

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_template raises on purpose."""


class ConfigError(DeviceError):
    """The command line asks for something inconsistent."""


class SinkError(DeviceError, BackendError):
    """The host sink at `path` failed; this request fails, the daemon goes on."""

    def __init__(self, what: str, path: Path | None = None) -> None:
        super().__init__(what)
        self.path = path
