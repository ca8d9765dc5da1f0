"""vhost-user device backends in Python: protocol, guest memory, virtqueues, daemon."""

from .backend import VhostUserBackend
from .errors import (
    BackendError,
    Disconnected,
    GuestMemoryError,
    ProtocolError,
    QueueError,
    VhostUserError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Disconnected",
    "GuestMemoryError",
    "ProtocolError",
    "QueueError",
    "VhostUserBackend",
    "VhostUserError",
    "__version__",
]
