"""A kick served without Python: a device's C fast path, called by the worker's C loop
with the session lock held at a kick. `FillFromFd` fills every
writable buffer from a file descriptor (virtio-rng); a device's own Cython subclasses
`QueueFastPath` (cimport `vhost_user_core.fastpath`) and overrides its C `serve`."""

from collections.abc import Callable

from .vring import Vring

class QueueFastPath:
    """Base class: its C `serve(vring, queue, log)` returns 0 when the kick is fully
    served, 1 when the device's `handle_queue` must run too (the base always answers 1).
    A ring with inflight records (INFLIGHT_SHMFD) is served only by a fast path that
    keeps them (`keeps_inflight`, set by its C code): `log` is then the ring's
    `InflightLog` (else None), and completions go through the C `complete_batch`."""

    @property
    def keeps_inflight(self) -> bool: ...

class InflightLog:
    """One ring's inflight records (`inflight.QueueInflight`) kept from C: `popped`,
    `unpopped` and the C `complete_batch` do what the `Vring` does from Python."""

    def __init__(self, source: object) -> None: ...
    @property
    def source(self) -> object: ...

class FillFromFd(QueueFastPath):
    """Each chain's writable buffers read straight from `fd` (readv into guest memory),
    a batch and one interrupt per wake-up. A malformed chain, a broken ring, a short
    read, an error or end of file (which turns `enabled` off) leave the rest to
    `handle_queue`."""

    enabled: bool
    def __init__(self, fd: int) -> None: ...
    @property
    def bytes_filled(self) -> int:
        """Bytes served by the fast path so far."""

class Kick:
    """A ring's kick fd as its worker's reader: calling it serves the ring (`fast`, then
    `process(vring)` if needed); the C loop does the same in C. Its worker watches it
    edge-triggered (every eventfd write is an edge), so the eventfd is never read."""

    def __init__(
        self,
        fd: int,
        vring: Vring,
        process: Callable[[Vring], None],
        fast: QueueFastPath | None = None,
    ) -> None: ...
    def __call__(self) -> None: ...
    def serve(self) -> None:
        """Serve what the ring holds, without a kick (a ring that just started)."""
    @property
    def fd(self) -> int: ...
    @property
    def fast(self) -> QueueFastPath | None: ...
