"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── SpiError                anything vhost_device_spi raises on purpose
        ├── ConfigError         flags that do not fit together (before any socket opens;
        │                       also a ValueError)
        └── ControllerError     the host's SPI controller cannot be opened or probed
            │                   (also a BackendError: a host-side failure)
            └── TransferError   the controller failed a message: its requests get
                                TRANS_ERR, the daemon goes on

A handler gets the controller's `path` ("sim" for the double) from a ControllerError.
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class SpiError(VhostUserError):
    """Base of every error vhost_device_spi raises on purpose."""


class ConfigError(SpiError, ValueError):
    """The command line asks for something inconsistent."""


class ControllerError(SpiError, BackendError):
    """The SPI controller at `path` failed."""

    def __init__(self, what: str, path: str) -> None:
        super().__init__(what)
        self.path = path


class TransferError(ControllerError):
    """One SPI message failed on the controller."""
