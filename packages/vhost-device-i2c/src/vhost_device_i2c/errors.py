"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── DeviceError             anything vhost_device_i2c raises on purpose
        ├── ConfigError         a bad --device-list, an adapter that cannot be used
        │                       (also a ValueError; before any socket opens)
        └── TransferError       the bus refused or failed one transfer
                                (also a BackendError: a host-side failure)

A TransferError carries the 7-bit `addr` it was for, so a handler can say which
device failed; the guest only ever sees VIRTIO_I2C_MSG_ERR for it.
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class DeviceError(VhostUserError):
    """Base of every error vhost_device_i2c raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """The command line asks for something that cannot be served."""


class TransferError(DeviceError, BackendError):
    """A transfer for `addr` failed on the host; its requests get VIRTIO_I2C_MSG_ERR."""

    def __init__(self, what: str, addr: int | None = None) -> None:
        super().__init__(what)
        self.addr = addr
