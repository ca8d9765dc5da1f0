"""Guest memory: region bookkeeping and bounds checks, including hostile ranges.

The layout used throughout: regions A and B are contiguous in guest-physical space,
then a hole, then region C.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import pytest

from vhost_user_core.errors import GuestMemoryError
from vhost_user_core.memory import MAX_REGIONS, GuestMemory

KIB = 1024
SIZE = 64 * KIB
A, B, HOLE, C = 0x0, 0x10000, 0x20000, 0x30000
VMM = 0x7F00_0000_0000


def memfd(size: int = SIZE) -> int:
    fd = os.memfd_create("test-guest", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


@pytest.fixture
def fds() -> Iterator[list[int]]:
    fds = [memfd() for _ in range(3)]
    yield fds
    for fd in fds:
        os.close(fd)


@pytest.fixture
def mem(fds: list[int]) -> Iterator[GuestMemory]:
    memory = GuestMemory()
    for gpa, fd in zip((A, B, C), fds, strict=True):
        memory.add_region(gpa, SIZE, VMM + gpa, 0, fd)
    yield memory
    memory.close()


def test_regions_are_sorted_and_listed(fds: list[int]) -> None:
    memory = GuestMemory()
    for gpa, fd in zip((C, A, B), fds, strict=True):
        memory.add_region(gpa, SIZE, VMM + gpa, 0, fd)
    assert [r.guest_phys_addr for r in memory.regions()] == [A, B, C]
    assert len(memory) == 3
    memory.close()


def test_reads_what_the_fd_holds(mem: GuestMemory, fds: list[int]) -> None:
    os.pwrite(fds[2], b"region C", 100)
    assert mem.read(C + 100, 8) == b"region C"
    mem.write(A + 8, b"written")
    assert os.pread(fds[0], 7, 8) == b"written"


def test_copy_across_contiguous_regions(mem: GuestMemory, fds: list[int]) -> None:
    data = bytes(range(256)) * 2
    mem.write(B - 256, data)
    assert os.pread(fds[0], 256, SIZE - 256) == data[:256]
    assert os.pread(fds[1], 256, 0) == data[256:]
    assert mem.read(B - 256, 512) == data


def test_address_outside_every_region(mem: GuestMemory) -> None:
    for gpa in (HOLE, HOLE + 0x800, C + SIZE, 1 << 40):
        with pytest.raises(GuestMemoryError):
            mem.read(gpa, 1)
        assert not mem.check_range(gpa, 1)


def test_range_straddling_into_a_hole(mem: GuestMemory, fds: list[int]) -> None:
    with pytest.raises(GuestMemoryError):
        mem.write(HOLE - 4, b"12345678")
    assert os.pread(fds[1], 4, SIZE - 4) == bytes(4)  # nothing written, not even the head


def test_range_straddling_out_of_the_last_region(mem: GuestMemory) -> None:
    with pytest.raises(GuestMemoryError):
        mem.read(C + SIZE - 4, 8)


def test_length_wrapping_the_address_space(mem: GuestMemory) -> None:
    with pytest.raises(GuestMemoryError):
        mem.read(0xFFFF_FFFF_FFFF_FF00, 0x200)
    assert not mem.check_range(A + 16, (1 << 64) - 8)


def test_view_must_lie_in_one_region(mem: GuestMemory) -> None:
    assert len(mem.view(A, SIZE)) == SIZE
    with pytest.raises(GuestMemoryError):
        mem.view(B - 8, 16)


def test_vmm_address_translation_is_bounded(mem: GuestMemory) -> None:
    assert mem.vmm_to_guest(VMM + C + 16, 64) == C + 16
    with pytest.raises(GuestMemoryError):
        mem.vmm_to_guest(VMM + C + SIZE - 8, 16)
    with pytest.raises(GuestMemoryError):
        mem.vmm_to_guest(VMM + HOLE, 1)
    with pytest.raises(GuestMemoryError):
        mem.vmm_to_guest(0xFFFF_FFFF_FFFF_FFF0, 0x20)


@pytest.mark.parametrize(
    "gpa, size, message",
    [
        (0x100000, 0, "size 0"),
        (0xFFFF_FFFF_FFFF_F000, 0x2000, "wraps"),
        (A + 0x1000, SIZE, "overlaps"),
        (C - 0x1000, 0x2000, "overlaps"),
    ],
)
def test_bad_regions_are_rejected(mem: GuestMemory, gpa: int, size: int, message: str) -> None:
    fd = memfd()
    try:
        with pytest.raises(GuestMemoryError, match=message):
            mem.add_region(gpa, size, VMM + 0x100000, 0, fd)
    finally:
        os.close(fd)
    assert len(mem) == 3


def test_unmappable_fd_is_rejected(mem: GuestMemory) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(GuestMemoryError, match="cannot map"):
            mem.add_region(0x100000, SIZE, VMM + 0x100000, 0, r)
    finally:
        os.close(r)
        os.close(w)


def test_region_limit(fds: list[int]) -> None:
    memory = GuestMemory()
    for i in range(MAX_REGIONS):
        memory.add_region(i * 4096, 4096, VMM + i * 4096, 0, fds[0])
    with pytest.raises(GuestMemoryError, match="more than"):
        memory.add_region(MAX_REGIONS * 4096, 4096, 0, 0, fds[0])
    memory.close()


def test_mmap_offset_need_not_be_page_aligned(fds: list[int]) -> None:
    os.pwrite(fds[0], b"offset", 0x123)
    memory = GuestMemory()
    memory.add_region(0x5000, 0x1000, VMM, 0x123, fds[0])
    assert memory.read(0x5000, 6) == b"offset"
    memory.close()


def test_remove_region(mem: GuestMemory) -> None:
    mem.remove_region(B, SIZE)
    assert [r.guest_phys_addr for r in mem.regions()] == [A, C]
    with pytest.raises(GuestMemoryError):
        mem.read(B, 1)
    with pytest.raises(GuestMemoryError, match="no memory region"):
        mem.remove_region(B, SIZE)


def test_closed_memory_refuses_access(mem: GuestMemory) -> None:
    mem.close()
    with pytest.raises(GuestMemoryError):
        mem.read(A, 1)
    with pytest.raises(GuestMemoryError, match="closed"):
        mem.view(A, 1)


def test_view_outlives_the_region_it_shows(mem: GuestMemory, fds: list[int]) -> None:
    """A view pins its mapping: removing the region (or closing the memory) must not
    leave it pointing at unmapped memory."""
    view = mem.view(B + 16, 8)
    mem.remove_region(B, SIZE)
    mem.close()
    gc.collect()
    view[:] = b"still ok"
    assert os.pread(fds[1], 8, 16) == b"still ok"


def test_pins_keep_mappings_until_released(mem: GuestMemory, fds: list[int]) -> None:
    view = mem.view(A, 4)
    pins = mem.pins
    assert len(pins) == 3
    mem.close()
    assert mem.pins == ()
    del pins
    view[:] = b"last"  # the view's own pin is enough
    assert os.pread(fds[0], 4, 0) == b"last"
