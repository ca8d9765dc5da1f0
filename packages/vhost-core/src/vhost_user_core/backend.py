"""The class a device subclasses: what it offers, and how it handles its queues.

Everything else (messages, memory, rings, threads, reconnect) is the framework's. A
daemon builds a fresh backend for every connection, so instance state never leaks from
one VMM session into the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BackendError
from .protocol import STANDARD_FEATURES, ProtocolFeature

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .memory import GuestMemory
    from .vring import Vring
    from .worker import Worker

#: Protocol features the framework implements for every device on its own.
FRAMEWORK_PROTOCOL_FEATURES = (
    ProtocolFeature.REPLY_ACK
    | ProtocolFeature.CONFIGURE_MEM_SLOTS
    | ProtocolFeature.RESET_DEVICE
    | ProtocolFeature.STATUS
)


class VhostUserBackend:
    """Base class of a device backend.

    Class attributes describe the device; override them in a subclass. The framework
    adds REPLY_ACK, CONFIGURE_MEM_SLOTS, RESET_DEVICE and STATUS to
    `protocol_features`, and CONFIG when `config_space()` is not empty.
    """

    #: Name used in logs and thread names.
    name: str = "vhost-user"
    num_queues: int = 1
    max_queue_size: int = 1024
    #: Device feature bits offered to the driver (PROTOCOL_FEATURES is always added).
    features: int = STANDARD_FEATURES
    protocol_features: ProtocolFeature = ProtocolFeature.MQ

    def queues_per_thread(self) -> list[int]:
        """Bitmask of queues per worker thread; default: one thread owns them all."""
        return [(1 << self.num_queues) - 1]

    def config_space(self) -> bytes:
        """The device's config space; empty means the device has none."""
        return b""

    def get_config(self, offset: int, size: int) -> bytes:
        config = self.config_space()
        if offset + size > len(config):
            raise BackendError(
                f"config read [{offset}, {offset + size}) beyond {len(config)} bytes"
            )
        return config[offset : offset + size]

    def set_config(self, offset: int, data: bytes) -> None:
        raise BackendError("this device's config space is read-only")

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        """This connection's worker threads (one per `queues_per_thread()` mask) and
        rings (one per queue), before any request is handled: watch device fds or arm
        timers on the thread that owns the queues they concern (callbacks run there
        under the session lock); keep the rings to poll them (`Vring.poll`)."""

    def acked_features(self, features: int) -> None:
        """The driver's feature choice (SET_FEATURES)."""

    def memory_changed(self, memory: GuestMemory) -> None:
        """The memory table changed; drop any guest pointer kept across calls."""

    def handle_queue(self, vring: Vring) -> None:
        """The guest kicked `vring` (or the ring just started with work pending)."""
        raise NotImplementedError

    def queue_stopped(self, vring: Vring) -> None:
        """GET_VRING_BASE is stopping `vring` (the VMM pauses or resets the device).
        Buffers the device still holds can be completed here, while the ring is still
        mapped; afterwards they are lost with it."""

    def reset(self) -> None:
        """RESET_DEVICE / RESET_OWNER: forget driver-visible state."""

    def close(self) -> None:
        """The connection ended; release host resources."""
