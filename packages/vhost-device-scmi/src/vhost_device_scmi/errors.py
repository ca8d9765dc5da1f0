"""The errors this package raises on purpose, rooted in the core's tree::

VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
└── DeviceError             anything vhost_device_scmi raises on purpose
    ├── ConfigError         a -d that cannot work (before any socket opens)
    └── SensorError         a host sensor cannot be read or started
                            (also a BackendError: a host-side failure; the
                            request gets HARDWARE_ERROR, the daemon goes on)
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_scmi raises on purpose."""


class ConfigError(DeviceError):
    """The command line asks for something that cannot work."""


class SensorError(DeviceError, BackendError):
    """A host sensor failed; this request fails, the daemon goes on."""
