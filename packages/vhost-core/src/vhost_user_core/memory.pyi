"""Guest memory: regions mapped from the VMM's fds, every access bounds-checked."""

from typing_extensions import Buffer

MAX_REGIONS: int  # 509, like rust-vmm (GET_MAX_MEM_SLOTS answer)

class MemoryRegion:
    @property
    def guest_phys_addr(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def userspace_addr(self) -> int: ...
    @property
    def mmap_offset(self) -> int: ...
    @property
    def host_addr(self) -> int:
        """Address of the region's first byte in this process (for diagnostics)."""

class GuestMemory:
    """A set of non-overlapping guest-physical regions.

    Every accessor raises GuestMemoryError unless [gpa, gpa+length) lies inside mapped
    memory; a range may span regions only where they are contiguous in guest-physical
    space. Lengths that wrap 64 bits are rejected.
    """

    def __init__(self) -> None: ...
    @property
    def pins(self) -> tuple[object, ...]:
        """The current regions' mappings. Holding this tuple keeps them mapped after
        the regions are removed or the memory closed (batches and rings hold it)."""
    def add_region(
        self, guest_phys_addr: int, size: int, userspace_addr: int, mmap_offset: int, fd: int
    ) -> None:
        """mmap `fd` (MAP_SHARED, read/write) at `mmap_offset` for `size` bytes.

        The fd is not closed (the caller owns it). Rejects size 0, wrapping ranges,
        overlap with an existing region, more than MAX_REGIONS regions, mmap failure.
        """
    def remove_region(self, guest_phys_addr: int, size: int) -> None:
        """Drop the region that starts at `guest_phys_addr` with `size` (unmapped once
        nothing pins it); GuestMemoryError if there is none."""
    def regions(self) -> list[MemoryRegion]: ...
    def __len__(self) -> int: ...
    def close(self) -> None:
        """Drop every region (unmapped once nothing pins it). Accessors raise
        GuestMemoryError afterwards."""
    def vmm_to_guest(self, userspace_addr: int, length: int) -> int:
        """Translate a VMM virtual address (SET_VRING_ADDR) to a GPA, range-checked."""
    def check_range(self, gpa: int, length: int) -> bool: ...
    def read(self, gpa: int, length: int) -> bytes: ...
    def readinto(self, gpa: int, buffer: Buffer) -> None: ...
    def write(self, gpa: int, data: Buffer) -> None: ...
    def view(self, gpa: int, length: int) -> memoryview:
        """A writable zero-copy view; the range must lie inside one region. The view
        keeps the mapping alive, so it never dangles."""
    def read_u16(self, gpa: int) -> int: ...
    def read_u32(self, gpa: int) -> int: ...
    def read_u64(self, gpa: int) -> int: ...
    def write_u16(self, gpa: int, value: int) -> None: ...
    def write_u32(self, gpa: int, value: int) -> None: ...
    def write_u64(self, gpa: int, value: int) -> None: ...
