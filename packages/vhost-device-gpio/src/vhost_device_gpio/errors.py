"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError              vhost_user_core: caught by main_guard (one line, exit 1)
    └── GpioError               anything vhost_device_gpio raises on purpose
        ├── ConfigError         flags that do not fit together (also a ValueError)
        └── LineError           the host chip refused an operation on a line
                                (also a BackendError: a host-side failure)

A request handler gets the chip and line from a LineError and answers the guest with
VIRTIO_GPIO_STATUS_ERR; the daemon goes on.
"""

from __future__ import annotations

from vhost_user_core import BackendError, VhostUserError


class GpioError(VhostUserError):
    """Base of every error vhost_device_gpio raises on purpose."""


class ConfigError(GpioError, ValueError):
    """The command line asks for something inconsistent."""


class LineError(GpioError, BackendError):
    """`chip` could not do what was asked of `line`; that request fails."""

    def __init__(self, what: str, chip: str, line: int | None = None) -> None:
        super().__init__(what)
        self.chip = chip
        self.line = line
