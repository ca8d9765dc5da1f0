"""Virtqueue chain walking (Cython) over fuzzed descriptor tables, indirect tables and
avail rings in real memfd guest memory, checked against a plain-Python model of the
split ring (virtio 1.x §2.7) as this package implements it.

Guest memory has three regions: two contiguous in GPA space (a buffer may span them),
and one after a gap, mapped at a non-page-aligned offset of its fd and shorter than its
mapping, so that bytes just past it are readable to a buggy walk but not guest memory.

Invariants:
- `pop` raises nothing but QueueError, and only where the model says the ring itself
  is broken (avail index too far ahead, head outside the ring); then the queue stays
  broken;
- every chain has the error the model predicts or, if none, exactly the model's
  readable and writable lengths and pieces, and `read()` and the views return exactly
  the guest bytes of the model's buffers: nothing outside guest regions is read; the
  entry pointing at an indirect table is no buffer of the chain, so a table of Queue
  Size entries is a whole chain;
- `write()` changes guest memory only inside the model's writable buffers (the whole
  memory is compared), and views of a batch stay usable after the memory table
  changed (the batch pins its mappings);
- after a fuzzed input the queue, reset and set up again, serves a good chain.
"""

from __future__ import annotations

import mmap
import os
import random
import struct

import atheris
from harness import check

from vhost_user_core.errors import QueueError
from vhost_user_core.memory import GuestMemory
from vhost_user_core.virtqueue import Virtqueue

F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4
DESC = struct.Struct("<QIHH")
MASK64 = (1 << 64) - 1
#: (gpa, size, fd length, mmap offset) of the three regions.
REGIONS = [(0x0, 0x8000, 0x8000, 0), (0x8000, 0x3000, 0x3000, 0), (0x10000, 0xF00, 0x2000, 0x100)]
DESC_GPA, AVAIL_GPA, USED_GPA = 0x0, 0x1000, 0x1400
INDIRECT_GPA = 0x6000
TOP = 0x11000

_fds = []
_maps = []
for _gpa, _size, _length, _offset in REGIONS:
    _fd = os.memfd_create("fuzz-vq", os.MFD_CLOEXEC)
    os.ftruncate(_fd, _length)
    _fds.append(_fd)
    _maps.append(mmap.mmap(_fd, _length))
_PATTERN = [random.Random(i).randbytes(length) for i, (_, _, length, _) in enumerate(REGIONS)]


def _memory(regions: list[int]) -> GuestMemory:
    memory = GuestMemory()
    for i in regions:
        gpa, size, _, offset = REGIONS[i]
        memory.add_region(gpa, size, 0x7F00_0000_0000 + gpa, offset, _fds[i])
    return memory


# -- the model ----------------------------------------------------------------------------


def _find(regions: list[int], gpa: int) -> int | None:
    for i in regions:
        start, size, _, _ = REGIONS[i]
        if start <= gpa < start + size:
            return i
    return None


def _wraps(gpa: int, length: int) -> bool:
    return length != 0 and gpa + length - 1 > MASK64


def _translate(regions: list[int], gpa: int, length: int) -> bool:
    i = _find(regions, gpa)
    if _wraps(gpa, length) or i is None:
        return False
    start, size, _, _ = REGIONS[i]
    return length <= size - (gpa - start)


def _segments(regions: list[int], gpa: int, length: int) -> list[tuple[int, int]] | None:
    if _wraps(gpa, length):
        return None
    out = []
    while length:
        i = _find(regions, gpa)
        if i is None or len(out) >= 8:
            return None
        start, size, _, _ = REGIONS[i]
        take = min(length, size - (gpa - start))
        out.append((gpa, take))
        gpa += take
        length -= take
    return out


def _read(gpa: int, length: int, image: list[bytearray]) -> bytes:
    out = b""
    while length:
        i = _find([0, 1, 2], gpa)
        assert i is not None
        start, size, _, offset = REGIONS[i]
        take = min(length, size - (gpa - start))
        base = offset + gpa - start
        out += image[i][base : base + take]
        gpa += take
        length -= take
    return out


def _write(gpa: int, data: bytes, image: list[bytearray]) -> None:
    while data:
        i = _find([0, 1, 2], gpa)
        assert i is not None
        start, size, _, offset = REGIONS[i]
        take = min(len(data), size - (gpa - start))
        base = offset + gpa - start
        image[i][base : base + take] = data[:take]
        gpa += take
        data = data[take:]


Model = tuple[str | None, list[tuple[int, int]], list[tuple[int, int]]]


def model_walk(regions: list[int], image: list[bytearray], size: int, head: int) -> Model:
    """(error, readable (gpa, len) pieces, writable pieces) of chain `head`."""
    reads: list[tuple[int, int]] = []
    writes: list[tuple[int, int]] = []
    table, table_len, idx, seen, indirect = DESC_GPA, size, head, 0, False
    error = None
    while True:
        if idx >= table_len:
            error = "descriptor index out of range"
            break
        seen += 1
        if seen > size:
            error = "chain longer than the queue (or a descriptor loop)"
            break
        addr, length, flags, nxt = DESC.unpack(_read(table + 16 * idx, 16, image))
        if flags & F_INDIRECT:
            if indirect:
                error = "nested indirect descriptor"
            elif flags & F_NEXT:
                error = "indirect descriptor with the NEXT flag"
            elif length == 0 or length % 16:
                error = "indirect table size is zero or not a multiple of 16"
            elif not _translate(regions, addr, length):
                error = "indirect table outside guest memory"
            if error:
                break
            table, table_len, indirect, idx = addr, length // 16, True, 0
            # The entry pointing at the table is no buffer of the chain: a table of
            # Queue Size entries is a whole chain, as the Cython walk has it.
            seen -= 1
            continue
        if length:
            if not flags & F_WRITE and writes:
                error = "device-readable buffer after a device-writable one"
                break
            pieces = _segments(regions, addr, length)
            if pieces is None:
                error = "buffer outside guest memory"
                break
            (writes if flags & F_WRITE else reads).extend(pieces)
        if not flags & F_NEXT:
            break
        idx = nxt
    if error:
        return error, [], []
    return None, reads, writes


# -- fuzzed rings ---------------------------------------------------------------------------


def _addr(fdp: atheris.FuzzedDataProvider) -> int:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind <= 3:
        return fdp.ConsumeIntInRange(0x1C10, TOP)
    if kind == 4:
        start, size, _, _ = REGIONS[fdp.ConsumeIntInRange(0, 2)]
        return start + size - fdp.ConsumeIntInRange(0, 64)
    if kind == 5:
        return fdp.ConsumeIntInRange(0, MASK64)
    if kind == 6:
        return MASK64 - fdp.ConsumeIntInRange(0, 4096)
    return INDIRECT_GPA + 16 * fdp.ConsumeIntInRange(0, 32)


def _len(fdp: atheris.FuzzedDataProvider) -> int:
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind <= 1:
        return fdp.ConsumeIntInRange(0, 64)
    if kind == 2:
        return fdp.ConsumeIntInRange(0, 0x5000)
    if kind == 3:
        return 16 * fdp.ConsumeIntInRange(0, 20)
    return fdp.ConsumeIntInRange(0, 0xFFFF_FFFF)


def _descriptor(fdp: atheris.FuzzedDataProvider, size: int) -> bytes:
    flags = fdp.ConsumeIntInRange(0, 7)
    if fdp.ConsumeIntInRange(0, 15) == 0:
        flags |= fdp.ConsumeIntInRange(0, 0xFFFF)
    nxt = fdp.ConsumeIntInRange(0, 2 * size)
    return DESC.pack(_addr(fdp), _len(fdp), flags, nxt)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    size = 1 << fdp.ConsumeIntInRange(0, 8)
    for m, pattern in zip(_maps, _PATTERN, strict=True):
        m[:] = pattern
    image = [bytearray(m[:]) for m in _maps]
    for i in range(size):
        _write(DESC_GPA + 16 * i, _descriptor(fdp, size), image)
    n_indirect = fdp.ConsumeIntInRange(0, 24)
    linked = fdp.ConsumeIntInRange(0, 3) == 0  # a whole table as one chain, to its end
    for i in range(n_indirect):
        desc = _descriptor(fdp, size)
        if linked:
            addr, length, flags, _ = DESC.unpack(desc)
            flags &= ~(F_NEXT | F_INDIRECT)
            desc = DESC.pack(addr, length, flags | (F_NEXT if i + 1 < n_indirect else 0), i + 1)
        _write(INDIRECT_GPA + 16 * i, desc, image)
    next_avail = fdp.ConsumeIntInRange(0, 0xFFFF) if fdp.ConsumeBool() else 0
    pending = fdp.ConsumeIntInRange(0, size + 1)
    if fdp.ConsumeIntInRange(0, 31) == 0:
        pending = fdp.ConsumeIntInRange(0, 0xFFFF)
    heads = [
        fdp.ConsumeIntInRange(0, size - 1)
        if fdp.ConsumeIntInRange(0, 15)
        else fdp.ConsumeIntInRange(0, 0xFFFF)
        for _ in range(size)
    ]
    _write(AVAIL_GPA, struct.pack("<HH", 0, (next_avail + pending) & 0xFFFF), image)
    _write(AVAIL_GPA + 4, struct.pack(f"<{size}H", *heads), image)
    _write(USED_GPA, bytes(4 + 8 * size), image)
    for m, img in zip(_maps, image, strict=True):
        m[:] = img
    limit = fdp.ConsumeIntInRange(0, size)
    regions = [0, 1, 2]
    memory = _memory(regions)
    queue = Virtqueue(0, 256)
    queue.set_size(size)
    queue.set_addresses(memory, DESC_GPA, AVAIL_GPA, USED_GPA)
    queue.next_avail = next_avail
    take = pending if limit == 0 else min(pending, limit)
    want_broken = pending > size or any(heads[(next_avail + i) % size] >= size for i in range(take))
    try:
        batch = queue.pop(limit)
    except QueueError:
        check(want_broken, "pop raised QueueError for a sound ring")
        check(queue.broken and len(queue.pop()) == 0, "a broken queue still yields chains")
        _good_chain_after(queue, memory)
        return
    check(not want_broken, "pop accepted a broken ring")
    check(len(batch) == take, f"popped {len(batch)} of {take}")
    models = [model_walk(regions, image, size, heads[(next_avail + i) % size]) for i in range(take)]
    for chain, (error, reads, writes) in zip(batch, models, strict=True):
        check(chain.error == error, f"chain {chain.head}: error {chain.error!r}, model {error!r}")
        check(chain.readable_len == sum(n for _, n in reads), "readable length differs")
        check(chain.writable_len == sum(n for _, n in writes), "writable length differs")
        want = b"".join(_read(g, n, image) for g, n in reads)
        check(chain.read() == want, f"chain {chain.head}: read() is not the guest's bytes")
        views = chain.readable_views()
        check(len(views) == len(reads), f"{len(views)} readable views, model {len(reads)}")
        check(b"".join(bytes(v) for v in views) == want, "readable views")
        views = chain.writable_views()
        check(len(views) == len(writes), f"{len(views)} writable views, model {len(writes)}")
        want = b"".join(_read(g, n, image) for g, n in writes)
        check(b"".join(bytes(v) for v in views) == want, "writable views")
    # Writes, some after the memory table changed under the batch.
    if fdp.ConsumeBool():
        memory.remove_region(*REGIONS[fdp.ConsumeIntInRange(0, 2)][:2])
        try:
            queue.set_memory(memory)
        except QueueError:
            check(not queue.configured, "a queue whose rings left memory stays configured")
    for chain, (_, _, writes) in zip(batch, models, strict=True):
        total = sum(n for _, n in writes)
        offset = fdp.ConsumeIntInRange(0, total + 2)
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, total + 8)) or b"\xa5"
        wrote = chain.write(payload, offset)
        expect = max(min(len(payload), total - offset), 0)
        check(wrote == expect, f"write() wrote {wrote}, model {expect}")
        # Piece by piece, touching only the bytes written (pieces may alias each other).
        pos = 0
        for g, n in writes:
            lo, hi = max(offset, pos), min(offset + expect, pos + n)
            if lo < hi:
                _write(g + lo - pos, payload[lo - offset : hi - offset], image)
            pos += n
    for m, img in zip(_maps, image, strict=True):
        check(m[:] == img, "guest memory changed outside the chains' writable buffers")
    if queue.configured:
        queue.add_used_batch(batch, [c.writable_len for c in batch])
    memory.close()
    _good_chain_after(queue, _memory(regions))


def _good_chain_after(queue: Virtqueue, memory: GuestMemory) -> None:
    """The queue, reset and set up again (as GET_VRING_BASE + a restart do), serves a
    plain two-buffer chain."""
    queue.reset()
    queue.set_size(4)
    queue.set_addresses(memory, DESC_GPA, AVAIL_GPA, USED_GPA)
    memory.write(DESC_GPA, DESC.pack(0x2000, 8, F_NEXT, 1) + DESC.pack(0x2100, 16, F_WRITE, 0))
    memory.write(AVAIL_GPA, struct.pack("<HHH", 0, 1, 0))
    memory.write(USED_GPA, bytes(4))
    memory.write(0x2000, b"goodgood")
    (chain,) = queue.pop()
    check(chain.error is None and chain.read() == b"goodgood", "good chain after an error")
    check(chain.write(b"x" * 16) == 16, "good chain's writable buffer")
    queue.add_used(chain.head, 16)
    check(memory.read_u16(USED_GPA + 2) == 1, "used index after the good chain")
    memory.close()
