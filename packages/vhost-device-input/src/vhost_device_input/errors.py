"""The errors this package raises on purpose, rooted in the core's tree::

VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
└── DeviceError             anything vhost_device_input raises on purpose
    ├── ConfigError         a bad --event-list, a device that cannot be opened or
    │                       grabbed (also a ValueError; before any socket opens)
    └── HostDeviceError     reading or writing a host device failed at run time
                            (also a BackendError)
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_input raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """The command line asks for something that cannot be served."""


class HostDeviceError(DeviceError, BackendError):
    """A host input device failed (unplugged, refused a write)."""
