"""The errors this package raises on purpose, rooted in the core's tree::

VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
└── DeviceError             anything vhost_device_console raises on purpose
    ├── ConfigError         flags that do not fit together (before any socket opens)
    └── HostError           the host side (terminal, TCP port, pty) cannot be set up
                            (also a BackendError: a host-side failure)
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_console raises on purpose."""


class ConfigError(DeviceError):
    """The command line asks for something inconsistent."""


class HostError(DeviceError, BackendError):
    """The host end of a console cannot be opened or used."""
