"""The class a device subclasses: what it offers, and how it handles its queues.

Everything else (messages, memory, rings, threads, reconnect) is the framework's. A
daemon builds a fresh backend for every connection, so instance state never leaks from
one VMM session into the next.

The contract is checked when a backend is constructed (after its own `__init__`, so a
device may set `num_queues`, `max_queue_size` or `features` there): a subclass without
`handle_queue`, or with a queue count, queue size or thread map that cannot work, fails
then with one line saying what is wrong, not on a worker thread at the first kick.
"""

from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import BackendContractError, BackendError
from .protocol import STANDARD_FEATURES, VRING_IDX_MASK, ProtocolFeature

if TYPE_CHECKING:
    import socket
    from collections.abc import Sequence

    from .fastpath import QueueFastPath
    from .memory import GuestMemory
    from .shmem import SharedMemory
    from .vring import Vring
    from .worker import Lock, Worker

#: Protocol features the framework implements for every device on its own.
FRAMEWORK_PROTOCOL_FEATURES = (
    ProtocolFeature.REPLY_ACK
    | ProtocolFeature.CONFIGURE_MEM_SLOTS
    | ProtocolFeature.RESET_DEVICE
    | ProtocolFeature.STATUS
)
#: Queues a device may have: a vhost-user ring fd word carries an 8-bit index.
MAX_QUEUES = VRING_IDX_MASK + 1
#: The largest split ring (virtio 1.x §2.7: Queue Size up to 32768).
MAX_QUEUE_SIZE = 32768


class _BackendMeta(abc.ABCMeta):
    """Checks the contract of every backend as it is constructed."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise BackendContractError(
                f"{cls.__qualname__} does not implement {', '.join(missing)}, "
                "which every VhostUserBackend must define"
            )
        backend = super().__call__(*args, **kwargs)
        check_contract(backend)
        return backend


class VhostUserBackend(metaclass=_BackendMeta):
    """Base class of a device backend.

    Class attributes describe the device; override them in a subclass (or set them
    in `__init__`). The framework adds REPLY_ACK, CONFIGURE_MEM_SLOTS, RESET_DEVICE and
    STATUS to `protocol_features`, and CONFIG when `config_space()` is not empty.
    `handle_queue` is the one method a device must define; every other hook has a
    default that does nothing (or, for config, serves a read-only space).
    """

    #: Name used in logs and thread names.
    name: str = "vhost-user"
    #: Virtqueues the device has (1..256).
    num_queues: int = 1
    #: The largest ring the VMM may set up: a power of two in 1..32768.
    max_queue_size: int = 1024
    #: Device feature bits offered to the driver (PROTOCOL_FEATURES is always added).
    features: int = STANDARD_FEATURES
    protocol_features: ProtocolFeature = ProtocolFeature.MQ

    @abc.abstractmethod
    def handle_queue(self, vring: Vring) -> None:
        """The guest kicked `vring` (or the ring just started with work pending): take
        its buffers (`vring.batches()`) and return them (`vring.complete()`). Runs on
        the worker thread that owns the queue, under the session lock."""

    def session_lock(self) -> Lock:
        """The lock the session holds while it handles a request, and each worker while
        it runs a callback (reentrant). A device whose own C thread touches a ring
        outside the workers (a realtime audio callback) supplies one that thread can
        also try without the GIL; default: a `threading.RLock`."""
        return threading.RLock()

    def queues_per_thread(self) -> list[int]:
        """Bitmask of queues per worker thread, each queue in exactly one; default: one
        thread owns them all."""
        return [(1 << self.num_queues) - 1]

    def config_space(self) -> bytes:
        """The device's config space; empty means the device has none."""
        return b""

    def get_config(self, offset: int, size: int) -> bytes:
        """GET_CONFIG: `size` bytes at `offset` of `config_space()`."""
        config = self.config_space()
        if offset + size > len(config):
            raise BackendError(
                f"config read [{offset}, {offset + size}) beyond {len(config)} bytes"
            )
        return config[offset : offset + size]

    def set_config(self, offset: int, data: bytes) -> None:
        """SET_CONFIG: the driver writes the config space (read-only by default)."""
        raise BackendError("this device's config space is read-only")

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        """This connection's worker threads (one per `queues_per_thread()` mask) and
        rings (one per queue), before any request is handled: watch device fds or arm
        timers on the thread that owns the queues they concern (callbacks run there
        under the session lock); keep the rings to poll them (`Vring.poll`)."""

    def fast_path(self, vring: Vring) -> QueueFastPath | None:
        """A C fast path for `vring`'s kicks (e.g. `FillFromFd`), asked for each time
        the ring starts being watched; the worker calls it without Python and calls
        `handle_queue` only when it answers that Python is needed. None (the default):
        every kick goes to `handle_queue`."""
        return None

    def acked_features(self, features: int) -> None:
        """The driver's feature choice (SET_FEATURES)."""

    def memory_changed(self, memory: GuestMemory) -> None:
        """The memory table changed; drop any guest pointer kept across calls."""

    def queue_stopped(self, vring: Vring) -> None:
        """GET_VRING_BASE is stopping `vring` (the VMM pauses or resets the device).
        Buffers the device still holds can be completed here, while the ring is still
        mapped; afterwards they are lost with it."""

    def reset(self) -> None:
        """RESET_DEVICE / RESET_OWNER: forget driver-visible state."""

    def gpu_socket(self, sock: socket.socket) -> None:
        """VHOST_USER_GPU_SET_SOCKET: QEMU's vhost-user-gpu hands over its display
        channel (one end of a socketpair), which the backend then owns and closes.
        Only a GPU device takes one; by default the request fails."""
        sock.close()
        raise BackendError("this device takes no vhost-user-gpu display socket")

    def shmem_regions(self) -> Sequence[int]:
        """Shared-memory regions the VMM should reserve, a size (whole pages) per shmid;
        0 leaves an id unused. Not empty: the framework offers SHMEM (with BACKEND_REQ
        and BACKEND_SEND_FD), answers GET_SHMEM_CONFIG and calls `attach_shmem`."""
        return ()

    def attach_shmem(self, shmem: SharedMemory) -> None:
        """The connection's handle on those regions, before any request: `map` an fd
        range into one, `unmap` it (over the backend channel, once the VMM set one)."""

    def close(self) -> None:
        """The connection ended; release host resources."""


def check_contract(backend: VhostUserBackend) -> None:
    """Raise BackendContractError, in one line, if `backend` cannot be served."""
    where = type(backend).__qualname__

    def fail(what: str) -> NoReturn:
        raise BackendContractError(f"{where}: {what}")

    if not isinstance(backend.name, str) or not backend.name:
        fail(f"name must be a non-empty string, not {backend.name!r}")
    n = backend.num_queues
    if type(n) is not int or not 1 <= n <= MAX_QUEUES:
        fail(f"num_queues must be an integer in 1..{MAX_QUEUES}, not {n!r}")
    size = backend.max_queue_size
    if type(size) is not int or not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
        fail(f"max_queue_size must be a power of two in 1..{MAX_QUEUE_SIZE}, not {size!r}")
    features = backend.features
    if not isinstance(features, int) or not 0 <= features < 1 << 64:
        fail(f"features must be a 64-bit feature mask, not {features!r}")
    if not isinstance(backend.protocol_features, ProtocolFeature):
        fail(f"protocol_features must be a ProtocolFeature, not {backend.protocol_features!r}")
    masks = backend.queues_per_thread()
    if not masks:
        fail("queues_per_thread() gave no worker thread")
    seen = 0
    for i, mask in enumerate(masks):
        if not isinstance(mask, int) or mask <= 0 or mask >> n:
            fail(f"queues_per_thread()[{i}] = {mask!r} is not a mask of queues 0..{n - 1}")
        if mask & seen:
            fail(f"queues_per_thread() puts queues {mask & seen:#x} on two threads")
        seen |= mask
    if seen != (1 << n) - 1:
        fail(f"queues_per_thread() leaves queues {~seen & ((1 << n) - 1):#x} on no thread")
