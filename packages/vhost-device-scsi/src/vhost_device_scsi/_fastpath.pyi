"""The request queues' common case in C (plain READ/WRITE of a present LUN, I/O that
need not wait), on the core's fast-path hook; everything else is the Python path's."""

from collections.abc import Sequence

from vhost_user_core import QueueFastPath

class RequestFastPath(QueueFastPath):
    """One request queue's fast path over a `ScsiBackend`. `luns`: per LUN, (image fd
    or -1, block size, read-only, image in memory)."""

    def __init__(
        self, backend: object, luns: Sequence[tuple[int, int, bool, bool]], inline_max: int
    ) -> None: ...
    @property
    def served(self) -> int:
        """Commands answered by the fast path so far."""
