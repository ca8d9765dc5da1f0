"""Device side of a split virtqueue (virtio 1.x §2.7), with hostile-input checks.

A malformed chain never raises out of `pop`: it comes back with `error` set and no
buffers, so the device can complete it with length 0. A ring-level violation (avail
index moving more than the queue size, a head index outside the queue) marks the queue
`broken`: it yields nothing more until it is reconfigured, and `pop` reports it once
by raising QueueError.
"""

from collections.abc import Iterator, Sequence

from typing_extensions import Buffer

from .memory import GuestMemory

VIRTQ_DESC_F_NEXT: int
VIRTQ_DESC_F_WRITE: int
VIRTQ_DESC_F_INDIRECT: int

class DescriptorChain:
    @property
    def head(self) -> int: ...
    @property
    def error(self) -> str | None:
        """Why the chain was rejected (out-of-memory address, loop, too long, nested
        indirect, bad indirect size, readable after writable), or None."""
    @property
    def readable_len(self) -> int: ...
    @property
    def writable_len(self) -> int: ...
    def read(self, max_len: int = -1) -> bytes:
        """Gather the device-readable buffers (up to max_len bytes)."""
    def write(self, data: Buffer, offset: int = 0) -> int:
        """Scatter `data` into the device-writable buffers starting at `offset`;
        returns bytes written (short if the buffers are smaller). Never touches
        device-readable buffers."""
    def readable_views(self) -> list[memoryview]:
        """Zero-copy, read-only views of the device-readable buffers; they keep the
        guest memory they show mapped for as long as they live."""
    def writable_views(self) -> list[memoryview]:
        """Zero-copy, writable views of the device-writable buffers (likewise pinned)."""

class ChainBatch(Sequence[DescriptorChain]):
    """Chains popped together; one Python object, not one per descriptor."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> DescriptorChain: ...  # type: ignore[override]
    def __iter__(self) -> Iterator[DescriptorChain]: ...
    def writable_lengths(self) -> list[int]:
        """Each chain's writable byte count (0 for chains with an error)."""
    def scatter(self, data: Buffer, lengths: Sequence[int]) -> None:
        """Write consecutive slices of `data` (lengths[i] bytes for chain i) into the
        chains' writable buffers, GIL released. sum(lengths) must be <= len(data) and
        each lengths[i] <= that chain's writable length. `lengths` may be shorter than
        the batch: only the first len(lengths) chains are written."""

class Virtqueue:
    def __init__(self, index: int, max_size: int) -> None: ...
    @property
    def index(self) -> int: ...
    @property
    def max_size(self) -> int: ...
    @property
    def size(self) -> int: ...
    def set_size(self, size: int) -> None:
        """1..max_size and a power of two, else QueueError."""
    def set_addresses(self, memory: GuestMemory, desc: int, avail: int, used: int) -> None:
        """GPAs of the three areas; checks alignment and that each lies in memory."""
    def set_memory(self, memory: GuestMemory) -> None:
        """New memory table (same GPAs); re-checks the ring areas."""
    @property
    def configured(self) -> bool:
        """Addresses set and valid."""
    next_avail: int
    next_used: int
    event_idx: bool
    @property
    def broken(self) -> bool: ...
    def sync_used_index(self) -> None:
        """Seed next_used from the guest's used->idx (after SET_VRING_ADDR)."""
    def pending(self) -> int:
        """Available chains not yet popped; marks the queue broken (and raises
        QueueError) if the guest's avail index ran more than `size` ahead."""
    def pop(self, limit: int = 0) -> ChainBatch:
        """Pop up to `limit` chains (0 = all pending)."""
    def pop_heads(self, heads: Sequence[int]) -> ChainBatch:
        """The chains at these heads, next_avail unchanged (inflight resubmission)."""
    def add_used(self, head: int, length: int) -> None: ...
    def add_used_batch(self, batch: ChainBatch, lengths: Sequence[int]) -> None:
        """Complete the first len(lengths) chains of `batch` with lengths[i] (the rest
        stay the caller's, e.g. rewound onto the ring); one used-idx update."""
    def needs_notification(self) -> bool:
        """Whether the driver wants an interrupt for the used entries added since the
        last call (EVENT_IDX's used_event, else VIRTQ_AVAIL_F_NO_INTERRUPT)."""
    def disable_notification(self) -> None: ...
    def enable_notification(self) -> bool:
        """Ask the driver for kicks again; True if chains arrived meanwhile."""
    def reset(self) -> None:
        """Forget addresses and indices (GET_VRING_BASE / RESET_DEVICE)."""
