"""vhost-user device backends in Python: protocol, guest memory, virtqueues, daemon.

Everything a device needs is importable from here; the submodules are the framework's
own rooms (see the README's "Device API").
"""

from importlib.metadata import version

from .backend import VhostUserBackend
from .cli import (
    add_logging_args,
    add_socket_args,
    add_version_arg,
    main_guard,
    open_listeners,
    positive_int,
    run_daemon,
    served_sockets,
    setup_logging,
)
from .connection import recv_with_fds, send_with_fds
from .daemon import Daemon, Listener, run_all
from .errors import (
    BackendContractError,
    BackendError,
    Disconnected,
    GuestMemoryError,
    ProtocolError,
    QueueError,
    VhostUserError,
)
from .fastpath import FillFromFd, QueueFastPath
from .memory import GuestMemory
from .protocol import (
    STANDARD_FEATURES,
    VIRTIO_F_NOTIFY_ON_EMPTY,
    VIRTIO_F_RING_RESET,
    VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC,
    ProtocolFeature,
)
from .shmem import SharedMemory, SharedMemoryError
from .virtqueue import ChainBatch, DescriptorChain
from .vring import Vring
from .worker import TimerHandle, Worker

__version__ = version("vhost-user-core")  # written once: in pyproject.toml

__all__ = [
    "STANDARD_FEATURES",
    "VIRTIO_F_NOTIFY_ON_EMPTY",
    "VIRTIO_F_RING_RESET",
    "VIRTIO_RING_F_EVENT_IDX",
    "VIRTIO_RING_F_INDIRECT_DESC",
    "BackendContractError",
    "BackendError",
    "ChainBatch",
    "Daemon",
    "DescriptorChain",
    "Disconnected",
    "FillFromFd",
    "GuestMemory",
    "GuestMemoryError",
    "Listener",
    "ProtocolError",
    "ProtocolFeature",
    "QueueError",
    "QueueFastPath",
    "SharedMemory",
    "SharedMemoryError",
    "TimerHandle",
    "VhostUserBackend",
    "VhostUserError",
    "Vring",
    "Worker",
    "__version__",
    "add_logging_args",
    "add_socket_args",
    "add_version_arg",
    "main_guard",
    "open_listeners",
    "positive_int",
    "recv_with_fds",
    "run_all",
    "run_daemon",
    "send_with_fds",
    "served_sockets",
    "setup_logging",
]
