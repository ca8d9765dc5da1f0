"""Logical units: what a disk answers to each decoded command (SBC-4, SPC-5).

Commands that need no image I/O are answered here, as bytes (`Reply`); those that do
come back as a `BlockIo` for the transport to run off the worker thread, with the
bounds, write protection and limits already checked. No file is touched here.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import codec
from .codec import (
    CdbError,
    Command,
    Sense,
    Status,
)

VENDOR = b"vhost-py"  # 8 bytes, T10 vendor identification
PRODUCT = b"raw image       "  # 16 bytes
REVISION = b"0.1 "  # 4 bytes

#: Block Limits: the most blocks one UNMAP descriptor, WRITE SAME or transfer may cover.
MAX_UNMAP_BLOCKS = 0x40000  # 128 MiB of 512-byte blocks
MAX_UNMAP_DESCRIPTORS = 256
MAX_WRITE_SAME_BLOCKS = 0x40000
MAX_TRANSFER_BLOCKS = 0xFFFF  # the config space's max_sectors

VPD_PAGES = (0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2)


class Medium(Protocol):
    """What a disk needs to know about its image (the host's `Image`)."""

    @property
    def block_size(self) -> int: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def serial(self) -> str: ...
    def blocks(self) -> int:
        """The capacity, read again (an image may have grown)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished command: status, sense (with CHECK CONDITION) and data-in bytes."""

    status: Status = Status.GOOD
    sense: Sense | None = None
    data: bytes = b""

    @classmethod
    def check(cls, sense: Sense) -> Reply:
        return cls(Status.CHECK_CONDITION, sense)


class IoKind(enum.Enum):
    READ = "read"  # data-in: `length` bytes at `offset`
    WRITE = "write"  # data-out: `length` bytes to `offset`
    SYNC = "sync"  # flush the image
    DISCARD = "discard"  # punch `ranges`, reads give zeros after
    FILL = "fill"  # `pattern` repeated over `length` bytes at `offset`


@dataclass(frozen=True, slots=True)
class BlockIo:
    kind: IoKind
    offset: int = 0
    length: int = 0
    fua: bool = False
    ranges: tuple[tuple[int, int], ...] = ()  # byte (offset, length) pairs
    pattern: bytes = field(default=b"", repr=False)


Outcome = Reply | BlockIo
#: Reads up to n bytes of the request's data-out buffer.
DataOut = Callable[[int], bytes]


def _truncate(data: bytes, allocation: int) -> bytes:
    return data[:allocation]


def standard_inquiry(peripheral: int) -> bytes:
    """Standard INQUIRY data (SPC-5 §6.7.2): SPC-5, HiSup, CmdQue, 36 bytes."""
    head = bytes((peripheral, 0, 0x07, 0x12, 31, 0, 0, 0x02))
    return head + VENDOR + PRODUCT + REVISION


#: Peripheral qualifier 011b, type 1Fh: "no logical unit here" (SPC-5 §6.7.2).
NO_LUN_INQUIRY = standard_inquiry(0x7F)


def _vpd(page: int, body: bytes, peripheral: int = 0) -> bytes:
    return struct.pack(">BBH", peripheral, page, len(body)) + body


class Disk:
    """A direct-access block device (peripheral type 0) on one image."""

    def __init__(self, medium: Medium, lun: int, *, solid_state: bool = False) -> None:
        self.medium = medium
        self.lun = lun
        self.solid_state = solid_state
        self.block_size = medium.block_size
        self.capacity = medium.blocks()

    @property
    def read_only(self) -> bool:
        return self.medium.read_only

    # -- dispatch ---------------------------------------------------------------------

    def execute(self, cmd: Command, data_out: DataOut) -> Outcome:
        try:
            return self._execute(cmd, data_out)
        except CdbError as exc:
            return Reply.check(exc.sense)

    def _execute(self, cmd: Command, data_out: DataOut) -> Outcome:
        if isinstance(cmd, codec.Rw):
            return self._rw(cmd)
        if isinstance(cmd, codec.TestUnitReady):
            return Reply()
        if isinstance(cmd, codec.Inquiry):
            data = self._vpd_page(cmd.page) if cmd.evpd else standard_inquiry(0)
            return Reply(data=_truncate(data, cmd.allocation))
        if isinstance(cmd, codec.RequestSense):
            # Sense goes with each CHECK CONDITION (autosense): nothing is left pending.
            return Reply(data=_truncate(codec.NO_SENSE.encode(cmd.descriptor), cmd.allocation))
        if isinstance(cmd, codec.ReadCapacity):
            return Reply(data=self._read_capacity(cmd))
        if isinstance(cmd, codec.ModeSense):
            return Reply(data=_truncate(self._mode_sense(cmd), cmd.allocation))
        if isinstance(cmd, codec.SyncCache):
            self._check_range(cmd.lba, cmd.blocks)
            return BlockIo(IoKind.SYNC)
        if isinstance(cmd, codec.WriteSame):
            return self._write_same(cmd, data_out)
        if isinstance(cmd, codec.Unmap):
            return self._unmap(cmd, data_out)
        if isinstance(cmd, codec.ReportOpcodes):
            return Reply(data=_truncate(report_opcodes(cmd), cmd.allocation))
        raise CdbError(codec.INVALID_OPCODE, f"{type(cmd).__name__} is the target's")

    # -- block commands ---------------------------------------------------------------

    def _check_range(self, lba: int, blocks: int) -> None:
        if lba > self.capacity or blocks > self.capacity - lba:
            raise CdbError(codec.LBA_OUT_OF_RANGE, f"LBA {lba}+{blocks} past {self.capacity}")

    def _check_writable(self) -> None:
        if self.read_only:
            raise CdbError(codec.WRITE_PROTECTED, "the LUN is read-only")

    def transfer_length(self, cmd: Command) -> int:
        """Bytes a READ or WRITE moves (the transport checks its buffers against it)."""
        return cmd.blocks * self.block_size if isinstance(cmd, codec.Rw) else 0

    def _rw(self, cmd: codec.Rw) -> Outcome:
        if cmd.write:
            self._check_writable()
        self._check_range(cmd.lba, cmd.blocks)
        if cmd.blocks == 0:
            return BlockIo(IoKind.SYNC) if cmd.fua and cmd.write else Reply()
        kind = IoKind.WRITE if cmd.write else IoKind.READ
        size = self.block_size
        return BlockIo(kind, cmd.lba * size, cmd.blocks * size, fua=cmd.fua)

    def _write_same(self, cmd: codec.WriteSame, data_out: DataOut) -> Outcome:
        self._check_writable()
        if cmd.blocks == 0 or cmd.blocks > MAX_WRITE_SAME_BLOCKS:
            # WSNZ=1 in the Block Limits page: 0 ("to the end") is refused.
            raise CdbError(codec.INVALID_FIELD_IN_CDB, f"WRITE SAME of {cmd.blocks} blocks")
        self._check_range(cmd.lba, cmd.blocks)
        size = self.block_size
        if cmd.ndob:
            block = bytes(size)
        else:
            block = data_out(size)
            if len(block) < size:
                raise CdbError(codec.PARAMETER_LIST_LENGTH_ERROR, "WRITE SAME without a block")
        offset, length = cmd.lba * size, cmd.blocks * size
        if cmd.unmap and not any(block):
            # LBPRZ=1: an unmapped block reads as zeros, so unmapping writes them.
            return BlockIo(IoKind.DISCARD, ranges=((offset, length),))
        return BlockIo(IoKind.FILL, offset, length, pattern=block)

    def _unmap(self, cmd: codec.Unmap, data_out: DataOut) -> Outcome:
        self._check_writable()
        if cmd.parameter_length == 0:
            return Reply()
        if cmd.parameter_length < 8:
            raise CdbError(codec.PARAMETER_LIST_LENGTH_ERROR, "UNMAP list under 8 bytes")
        ranges = codec.decode_unmap(data_out(cmd.parameter_length))
        if len(ranges) > MAX_UNMAP_DESCRIPTORS:
            raise CdbError(codec.INVALID_FIELD_IN_PARAMETERS, "too many UNMAP descriptors")
        size = self.block_size
        out = []
        for lba, blocks in ranges:
            if blocks > MAX_UNMAP_BLOCKS:
                raise CdbError(codec.INVALID_FIELD_IN_PARAMETERS, f"UNMAP of {blocks} blocks")
            self._check_range(lba, blocks)
            if blocks:
                out.append((lba * size, blocks * size))
        return BlockIo(IoKind.DISCARD, ranges=tuple(out)) if out else Reply()

    # -- data-in pages ----------------------------------------------------------------

    def _read_capacity(self, cmd: codec.ReadCapacity) -> bytes:
        self.capacity = self.medium.blocks()
        last = self.capacity - 1
        if not cmd.sixteen:
            return struct.pack(">II", min(last, 0xFFFFFFFF), self.block_size)
        # LBPME: thin provisioned (UNMAP frees blocks); LBPRZ: unmapped reads zeros.
        data = struct.pack(">QIBBH", last, self.block_size, 0, 0, 0xC000) + bytes(16)
        return _truncate(data, cmd.allocation)

    def _vpd_page(self, page: int) -> bytes:
        if page == 0x00:
            return _vpd(0x00, bytes(VPD_PAGES))
        if page == 0x80:
            return _vpd(0x80, self.medium.serial.encode())
        if page == 0x83:
            # One T10 vendor ID designator (code set ASCII, association: the LU).
            ident = VENDOR + self.medium.serial.encode()
            return _vpd(0x83, bytes((0x02, 0x01, 0, len(ident))) + ident)
        if page == 0xB0:
            body = struct.pack(
                ">BBHIIIIIIIQ",
                0x01,  # WSNZ: WRITE SAME of 0 blocks is refused
                0,  # MAXIMUM COMPARE AND WRITE LENGTH
                1,  # OPTIMAL TRANSFER LENGTH GRANULARITY
                MAX_TRANSFER_BLOCKS,
                0,  # OPTIMAL TRANSFER LENGTH
                0,  # MAXIMUM PREFETCH LENGTH
                MAX_UNMAP_BLOCKS,
                MAX_UNMAP_DESCRIPTORS,
                4096 // self.block_size,  # OPTIMAL UNMAP GRANULARITY: a page
                0,  # UNMAP GRANULARITY ALIGNMENT (not valid)
                MAX_WRITE_SAME_BLOCKS,
            )
            return _vpd(0xB0, body + bytes(0x3C - len(body)))
        if page == 0xB1:
            rate = 1 if self.solid_state else 0  # 1: non-rotating medium
            return _vpd(0xB1, struct.pack(">H", rate) + bytes(0x3C - 2))
        if page == 0xB2:
            # LBPU (UNMAP), LBPWS (WRITE SAME(16) UNMAP), LBPWS10, LBPRZ=1; thin.
            return _vpd(0xB2, bytes((0, 0xE4, 0x02, 0)))
        raise CdbError(codec.INVALID_FIELD_IN_CDB, f"VPD page {page:#04x}")

    def _mode_pages(self, page: int, subpage: int, pc: int) -> bytes:
        changeable = pc == 1
        # Caching (08h): WCE, so the guest flushes with SYNCHRONIZE CACHE.
        caching = bytes((0x08, 0x12, 0x00 if changeable else 0x04)) + bytes(17)
        # Control (0Ah): D_SENSE=0 (fixed-format sense), QERR=0.
        control = bytes((0x0A, 0x0A)) + bytes(10)
        pages = {0x08: caching, 0x0A: control}
        if page == 0x3F and subpage in (0x00, 0xFF):
            return b"".join(pages[p] for p in sorted(pages))
        if subpage == 0 and page in pages:
            return pages[page]
        raise CdbError(codec.INVALID_FIELD_IN_CDB, f"mode page {page:#x}/{subpage:#x}")

    def _mode_sense(self, cmd: codec.ModeSense) -> bytes:
        if cmd.pc == 3:
            raise CdbError(codec.SAVING_PARAMETERS_UNSUPPORTED, "saved mode pages")
        pages = self._mode_pages(cmd.page, cmd.subpage, cmd.pc)
        specific = (0x80 if self.read_only else 0) | 0x10  # WP, DPOFUA
        if cmd.dbd:
            block = b""
        elif cmd.llbaa:
            block = struct.pack(">Q4xI", self.capacity, self.block_size)
        else:
            count = min(self.capacity, 0xFFFFFF)
            block = struct.pack(">I", count)[1:].rjust(4, b"\0") + struct.pack(
                ">I", self.block_size
            )
        if cmd.ten:
            length = 6 + len(block) + len(pages)
            head = struct.pack(">HBBBxH", length, 0, specific, int(cmd.llbaa), len(block))
        else:
            length = 3 + len(block) + len(pages)
            head = bytes((length, 0, specific, len(block)))
        return head + block + pages


def report_opcodes(cmd: codec.ReportOpcodes) -> bytes:
    """REPORT SUPPORTED OPERATION CODES (SPC-5 §6.35): all, or one command."""
    timeouts = 12 if cmd.rctd else 0
    if cmd.options == 0:
        body = b"".join(
            struct.pack(
                ">BxHxBH",
                op,
                sa or 0,
                (0x01 if sa is not None else 0) | (0x02 if cmd.rctd else 0),
                length,
            )
            + (struct.pack(">HxxII", 10, 0, 0) if cmd.rctd else b"")
            for op, sa, length in codec.SUPPORTED
        )
        return struct.pack(">I", len(body)) + body
    found = None
    for op, sa, length in codec.SUPPORTED:
        if op != cmd.opcode:
            continue
        if cmd.options == 1 and sa is not None:
            raise CdbError(codec.INVALID_FIELD_IN_CDB, f"opcode {op:#x} has service actions")
        if cmd.options == 2 and sa is None:
            raise CdbError(codec.INVALID_FIELD_IN_CDB, f"opcode {op:#x} has none")
        if sa is None or sa == cmd.service_action:
            found = (op, length)
    if found is None:
        return bytes((0, 0x01, 0, 0))  # SUPPORT 001b: not supported
    op, length = found
    usage = bytes((op,)) + b"\xff" * (length - 2) + b"\x07"
    head = bytes((0, 0x03 | (0x80 if cmd.rctd else 0))) + struct.pack(">H", length)
    return head + usage + (struct.pack(">HxxII", 10, 0, 0) if timeouts else b"")
