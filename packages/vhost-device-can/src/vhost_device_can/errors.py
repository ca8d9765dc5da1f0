"""The errors this package raises on purpose, rooted in the core's tree::

VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
└── DeviceError             anything vhost_device_can raises on purpose
    ├── ConfigError         flags that do not fit together (before any socket opens)
    ├── HostError           a named CAN interface cannot be opened (at start)
    └── BusError            a frame could not be sent: the guest's controller goes
                            BUSOFF (also a BackendError: a host-side failure)
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_can raises on purpose."""


class ConfigError(DeviceError):
    """The command line asks for something inconsistent."""


class HostError(DeviceError):
    """A CAN interface named on the command line is missing or unusable."""


class BusError(DeviceError, BackendError):
    """The bus refused a frame; the request fails and the controller is BUSOFF."""
