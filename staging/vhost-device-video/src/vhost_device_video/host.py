"""The host side behind small interfaces: a `Backend` (what the device can decode) makes
one `Decoder` per stream, which reports back through the stream's `StreamEvents`.

Two backends, chosen with `-b/--backend`: `null` (the shipped double: accepts any
stream and returns empty frames) and `v4l2-decoder` (a V4L2 stateful mem2mem
decoder, `-d/--v4l2-device`). Both run on the connection's worker thread: a decoder
that waits for the kernel watches an fd in that worker's epoll.
"""

from __future__ import annotations

from typing import Protocol

from vhost_user_core import GuestMemory, Worker

from .args import VideoConfig
from .protocol import BufferFlag, Control, Format, FormatDesc, Params, QueueType
from .resource import Resource


class MemoryRef:
    """The guest memory as it is now; the device swaps it on every memory-table change."""

    def __init__(self) -> None:
        self.memory: GuestMemory | None = None

    def get(self) -> GuestMemory:
        if self.memory is None:
            from vhost_user_core import GuestMemoryError

            raise GuestMemoryError("no guest memory table yet")
        return self.memory


class StreamEvents(Protocol):
    """What a decoder tells its stream, always on the worker thread."""

    def done(
        self, queue: QueueType, resource_id: int, timestamp: int, flags: BufferFlag, size: int = 0
    ) -> None:
        """A queued resource is the guest's again (EOS on the drain's last output)."""

    def resolution_changed(self) -> None:
        """The decoder found (new) stream metadata: output params changed."""

    def error(self, why: str) -> None:
        """The decoder failed; the stream cannot go on."""


class Decoder(Protocol):
    """One stream's decoding. Calls that cannot be honoured raise CommandError."""

    def get_params(self, queue: QueueType) -> Params: ...

    def set_params(self, params: Params) -> None: ...

    def queue(
        self, queue: QueueType, resource: Resource, timestamp: int, data_sizes: tuple[int, ...]
    ) -> None:
        """Take `resource`; report it back with `StreamEvents.done`, maybe at once."""

    def drain(self) -> None:
        """Decode everything queued, then return an output with BufferFlag.EOS."""

    def clear(self, queue: QueueType) -> None:
        """Drop every resource queued on `queue` (without `done`); a drain ends."""

    def destroy_all(self, queue: QueueType) -> None:
        """Forget `queue`'s resources (nothing of it is queued any more)."""

    def close(self) -> None: ...


class Backend(Protocol):
    """What the host can decode; one per process, shared by the connections."""

    def capabilities(self, queue: QueueType) -> list[FormatDesc]: ...

    def controls(self, fmt: Format) -> dict[Control, tuple[int, ...]]:
        """The decoder controls of `fmt`, each with its supported values (first: default)."""

    def open_stream(
        self, coded_format: Format, events: StreamEvents, memory: MemoryRef, worker: Worker
    ) -> Decoder:
        """A decoder for a new stream (BackendError if the host cannot open one)."""

    def close(self) -> None: ...


def open_backend(config: VideoConfig) -> Backend:
    """The backend the flags name; a v4l2 device is opened (and checked) here."""
    if config.backend == "null":
        from .null import NullBackend

        return NullBackend()
    from .v4l2_decoder import V4l2Backend

    return V4l2Backend(config.v4l2_device)
