"""One exception tree for the core: callers catch `VhostUserError` at their boundary."""

from __future__ import annotations


class VhostUserError(Exception):
    """Base of every error the core raises on purpose."""


class ProtocolError(VhostUserError):
    """A vhost-user message was malformed, unknown, or not allowed in this state."""


class GuestMemoryError(VhostUserError):
    """A guest address or length does not lie inside the mapped guest memory."""


class QueueError(VhostUserError):
    """A virtqueue is misconfigured, or the guest broke the ring protocol."""


class BackendError(VhostUserError):
    """The device backend could not perform a request (host-side failure)."""


class Disconnected(VhostUserError):
    """The peer closed the vhost-user connection."""


class BackendContractError(VhostUserError, TypeError):
    """A VhostUserBackend subclass breaks the base class's contract (no `handle_queue`,
    a queue count or size that cannot work): a programming error, reported when the
    device is constructed rather than on a worker thread at the first kick."""
