"""Driver side of a split virtqueue, for the Python frontend (tests and benchmarks).

It lays the descriptor table, avail and used rings out in a GuestMemory and plays the
guest driver: post buffers, publish them, reap used entries. Batch calls run in C.
"""

from collections.abc import Sequence

from .memory import GuestMemory

class DriverQueue:
    def __init__(
        self,
        memory: GuestMemory,
        size: int,
        desc: int,
        avail: int,
        used: int,
        event_idx: bool = False,
    ) -> None:
        """Zeroes the three areas. `size` must be a power of two."""
    @property
    def size(self) -> int: ...
    @property
    def free_descriptors(self) -> int: ...
    @staticmethod
    def layout(size: int) -> tuple[int, int, int]:
        """Byte sizes of (descriptor table, avail ring, used ring) for `size`."""
    def add(self, buffers: Sequence[tuple[int, int, bool]]) -> int:
        """Post one chain of (gpa, length, device_writable) buffers; returns its head.
        Not visible to the device until publish()."""
    def add_indirect(self, table_gpa: int, buffers: Sequence[tuple[int, int, bool]]) -> int:
        """Post one chain through an indirect table written at `table_gpa`."""
    def add_writable_batch(self, count: int, first_gpa: int, length: int, stride: int) -> int:
        """Post `count` single-descriptor device-writable chains (buffer i at
        first_gpa + i*stride); returns how many were posted (limited by free slots)."""
    def write_raw_descriptor(
        self, index: int, addr: int, length: int, flags: int, next: int
    ) -> None:
        """Write a descriptor verbatim (hostile-input tests)."""
    def push_avail(self, head: int) -> None:
        """Put a raw head index on the avail ring (hostile-input tests)."""
    def set_avail_idx(self, value: int) -> None:
        """Overwrite avail->idx verbatim (hostile-input tests)."""
    def publish(self) -> bool:
        """Make posted chains visible; True if the device wants a kick (EVENT_IDX's
        avail_event, else !VIRTQ_USED_F_NO_NOTIFY)."""
    def get_used(self) -> list[tuple[int, int]]:
        """Reap every new used entry as (head, length) and free its descriptors."""
    def reap(self) -> tuple[int, int]:
        """Reap every new used entry; returns (count, total length). No list built."""
    def set_interrupt_suppressed(self, suppressed: bool) -> None:
        """VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event far away under EVENT_IDX."""
    def arm_interrupt(self) -> None:
        """Under EVENT_IDX, ask for an interrupt at the next used entry."""
