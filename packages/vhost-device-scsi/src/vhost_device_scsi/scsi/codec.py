"""SCSI as bytes: opcodes, status, sense data and CDB decoding (SPC-5, SBC-4); pure.

A CDB decodes into one small frozen dataclass per command family, or raises
`CdbError` carrying the sense the command must fail with, so the emulation in `lun`
only ever sees well-formed commands.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

# -- status and sense -----------------------------------------------------------------


class Status(enum.IntEnum):
    GOOD = 0x00
    CHECK_CONDITION = 0x02
    BUSY = 0x08
    TASK_ABORTED = 0x40


class SenseKey(enum.IntEnum):
    NO_SENSE = 0x0
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    ABORTED_COMMAND = 0xB


@dataclass(frozen=True, slots=True)
class Sense:
    """A sense key with its additional sense code and qualifier."""

    key: SenseKey
    asc: int
    ascq: int = 0

    def fixed(self) -> bytes:
        """Fixed format (response code 70h), 18 bytes."""
        return bytes((0x70, 0, self.key, 0, 0, 0, 0, 10, 0, 0, 0, 0, self.asc, self.ascq)) + bytes(
            4
        )

    def descriptor(self) -> bytes:
        """Descriptor format (response code 72h) with no descriptors, 8 bytes."""
        return bytes((0x72, self.key, self.asc, self.ascq, 0, 0, 0, 0))

    def encode(self, descriptor: bool = False) -> bytes:
        return self.descriptor() if descriptor else self.fixed()


NO_SENSE = Sense(SenseKey.NO_SENSE, 0x00)
INVALID_OPCODE = Sense(SenseKey.ILLEGAL_REQUEST, 0x20)
LBA_OUT_OF_RANGE = Sense(SenseKey.ILLEGAL_REQUEST, 0x21)
INVALID_FIELD_IN_CDB = Sense(SenseKey.ILLEGAL_REQUEST, 0x24)
LUN_NOT_SUPPORTED = Sense(SenseKey.ILLEGAL_REQUEST, 0x25)
INVALID_FIELD_IN_PARAMETERS = Sense(SenseKey.ILLEGAL_REQUEST, 0x26)
PARAMETER_LIST_LENGTH_ERROR = Sense(SenseKey.ILLEGAL_REQUEST, 0x1A)
SAVING_PARAMETERS_UNSUPPORTED = Sense(SenseKey.ILLEGAL_REQUEST, 0x39)
WRITE_PROTECTED = Sense(SenseKey.DATA_PROTECT, 0x27)
SPACE_ALLOCATION_FAILED = Sense(SenseKey.DATA_PROTECT, 0x27, 0x07)
UNRECOVERED_READ_ERROR = Sense(SenseKey.MEDIUM_ERROR, 0x11)
WRITE_ERROR = Sense(SenseKey.MEDIUM_ERROR, 0x0C)
INTERNAL_TARGET_FAILURE = Sense(SenseKey.HARDWARE_ERROR, 0x44)
RESET_OCCURRED = Sense(SenseKey.UNIT_ATTENTION, 0x29)


class CdbError(ValueError):
    """A CDB the device server rejects; `sense` says why."""

    def __init__(self, sense: Sense, what: str) -> None:
        super().__init__(what)
        self.sense = sense


# -- opcodes --------------------------------------------------------------------------


class Op(enum.IntEnum):
    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SENSE_6 = 0x1A
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    SYNCHRONIZE_CACHE_10 = 0x35
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    MODE_SENSE_10 = 0x5A
    READ_16 = 0x88
    WRITE_16 = 0x8A
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3
    READ_12 = 0xA8
    WRITE_12 = 0xAA


#: Service actions of the two opcodes that have them here.
SA_READ_CAPACITY_16 = 0x10
SA_REPORT_SUPPORTED_OPCODES = 0x0C

#: (opcode, service action or None, CDB length): what REPORT SUPPORTED OPERATION
#: CODES lists, in opcode order.
SUPPORTED: tuple[tuple[int, int | None, int], ...] = tuple(
    sorted(
        [
            (Op.TEST_UNIT_READY, None, 6),
            (Op.REQUEST_SENSE, None, 6),
            (Op.READ_6, None, 6),
            (Op.WRITE_6, None, 6),
            (Op.INQUIRY, None, 6),
            (Op.MODE_SENSE_6, None, 6),
            (Op.READ_CAPACITY_10, None, 10),
            (Op.READ_10, None, 10),
            (Op.WRITE_10, None, 10),
            (Op.SYNCHRONIZE_CACHE_10, None, 10),
            (Op.WRITE_SAME_10, None, 10),
            (Op.UNMAP, None, 10),
            (Op.MODE_SENSE_10, None, 10),
            (Op.READ_16, None, 16),
            (Op.WRITE_16, None, 16),
            (Op.SYNCHRONIZE_CACHE_16, None, 16),
            (Op.WRITE_SAME_16, None, 16),
            (Op.SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16, 16),
            (Op.REPORT_LUNS, None, 12),
            (Op.MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES, 12),
            (Op.READ_12, None, 12),
            (Op.WRITE_12, None, 12),
        ],
        key=lambda e: (e[0], e[1] or 0),
    )
)


def cdb_length(opcode: int) -> int:
    """The CDB length its group code implies (SPC-5 §4.2.5.1); 0 for the variable
    length and vendor groups."""
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(opcode >> 5, 0)


# -- decoded commands -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestUnitReady:
    pass


@dataclass(frozen=True, slots=True)
class RequestSense:
    descriptor: bool
    allocation: int


@dataclass(frozen=True, slots=True)
class Inquiry:
    evpd: bool
    page: int
    allocation: int


@dataclass(frozen=True, slots=True)
class ModeSense:
    ten: bool  # MODE SENSE(10), else (6)
    dbd: bool
    llbaa: bool
    pc: int  # 0 current, 1 changeable, 2 default, 3 saved
    page: int
    subpage: int
    allocation: int


@dataclass(frozen=True, slots=True)
class ReadCapacity:
    sixteen: bool
    allocation: int


@dataclass(frozen=True, slots=True)
class Rw:
    """READ or WRITE (6/10/12/16)."""

    write: bool
    lba: int
    blocks: int
    fua: bool


@dataclass(frozen=True, slots=True)
class SyncCache:
    lba: int
    blocks: int  # 0: to the end of the medium


@dataclass(frozen=True, slots=True)
class WriteSame:
    lba: int
    blocks: int
    unmap: bool
    ndob: bool  # no data-out buffer: the block is zeros


@dataclass(frozen=True, slots=True)
class Unmap:
    parameter_length: int


@dataclass(frozen=True, slots=True)
class ReportLuns:
    select: int
    allocation: int


@dataclass(frozen=True, slots=True)
class ReportOpcodes:
    options: int
    rctd: bool
    opcode: int
    service_action: int
    allocation: int


Command = (
    TestUnitReady
    | RequestSense
    | Inquiry
    | ModeSense
    | ReadCapacity
    | Rw
    | SyncCache
    | WriteSame
    | Unmap
    | ReportLuns
    | ReportOpcodes
)


def _u16(cdb: bytes, at: int) -> int:
    return int.from_bytes(cdb[at : at + 2], "big")


def _u32(cdb: bytes, at: int) -> int:
    return int.from_bytes(cdb[at : at + 4], "big")


def _u64(cdb: bytes, at: int) -> int:
    return int.from_bytes(cdb[at : at + 8], "big")


def _invalid(what: str) -> CdbError:
    return CdbError(INVALID_FIELD_IN_CDB, what)


def decode(cdb: bytes) -> Command:
    """The command in `cdb` (the whole CDB field; bytes past the command's length are
    ignored), or CdbError with the sense to answer."""
    if not cdb:
        raise CdbError(INVALID_OPCODE, "empty CDB")
    op = cdb[0]
    need = cdb_length(op)
    if need == 0 or len(cdb) < need:
        raise CdbError(INVALID_OPCODE, f"opcode {op:#04x} needs a CDB longer than {len(cdb)}")
    # NACA (control byte bit 2) is not supported: the INQUIRY data says NormACA=0.
    if cdb[need - 1] & 0x04:
        raise _invalid("NACA set in the control byte")
    if op == Op.TEST_UNIT_READY:
        return TestUnitReady()
    if op == Op.REQUEST_SENSE:
        return RequestSense(bool(cdb[1] & 1), cdb[4])
    if op == Op.INQUIRY:
        evpd = bool(cdb[1] & 1)
        if not evpd and cdb[2]:
            raise _invalid("INQUIRY page code without EVPD")
        return Inquiry(evpd, cdb[2], _u16(cdb, 3))
    if op in (Op.MODE_SENSE_6, Op.MODE_SENSE_10):
        ten = op == Op.MODE_SENSE_10
        return ModeSense(
            ten,
            bool(cdb[1] & 0x08),
            ten and bool(cdb[1] & 0x10),
            cdb[2] >> 6,
            cdb[2] & 0x3F,
            cdb[3],
            _u16(cdb, 7) if ten else cdb[4],
        )
    if op == Op.READ_CAPACITY_10:
        if cdb[8] & 1 or _u32(cdb, 2):  # PMI and its LBA are obsolete in SBC-4
            raise _invalid("READ CAPACITY(10) with PMI")
        return ReadCapacity(False, 8)
    if op == Op.SERVICE_ACTION_IN_16:
        if cdb[1] & 0x1F != SA_READ_CAPACITY_16:
            raise CdbError(INVALID_OPCODE, f"SERVICE ACTION IN(16) action {cdb[1] & 0x1F:#x}")
        return ReadCapacity(True, _u32(cdb, 10))
    if op in (Op.READ_6, Op.WRITE_6):
        lba = ((cdb[1] & 0x1F) << 16) | _u16(cdb, 2)
        return Rw(op == Op.WRITE_6, lba, cdb[4] or 256, False)
    if op in (Op.READ_10, Op.WRITE_10):
        return Rw(op == Op.WRITE_10, _u32(cdb, 2), _u16(cdb, 7), bool(cdb[1] & 0x08))
    if op in (Op.READ_12, Op.WRITE_12):
        return Rw(op == Op.WRITE_12, _u32(cdb, 2), _u32(cdb, 6), bool(cdb[1] & 0x08))
    if op in (Op.READ_16, Op.WRITE_16):
        return Rw(op == Op.WRITE_16, _u64(cdb, 2), _u32(cdb, 10), bool(cdb[1] & 0x08))
    if op == Op.SYNCHRONIZE_CACHE_10:
        return SyncCache(_u32(cdb, 2), _u16(cdb, 7))
    if op == Op.SYNCHRONIZE_CACHE_16:
        return SyncCache(_u64(cdb, 2), _u32(cdb, 10))
    if op in (Op.WRITE_SAME_10, Op.WRITE_SAME_16):
        if cdb[1] & 0x10:
            raise _invalid("WRITE SAME with ANCHOR")
        ndob = op == Op.WRITE_SAME_16 and bool(cdb[1] & 0x01)
        if op == Op.WRITE_SAME_10:
            return WriteSame(_u32(cdb, 2), _u16(cdb, 7), bool(cdb[1] & 0x08), False)
        return WriteSame(_u64(cdb, 2), _u32(cdb, 10), bool(cdb[1] & 0x08), ndob)
    if op == Op.UNMAP:
        if cdb[1] & 0x01:
            raise _invalid("UNMAP with ANCHOR")
        return Unmap(_u16(cdb, 7))
    if op == Op.REPORT_LUNS:
        allocation = _u32(cdb, 6)
        if allocation < 16:
            raise _invalid(f"REPORT LUNS allocation length {allocation} < 16")
        if cdb[2] not in (0x00, 0x01, 0x02):
            raise _invalid(f"REPORT LUNS select report {cdb[2]:#x}")
        return ReportLuns(cdb[2], allocation)
    if op == Op.MAINTENANCE_IN:
        if cdb[1] & 0x1F != SA_REPORT_SUPPORTED_OPCODES:
            raise CdbError(INVALID_OPCODE, f"MAINTENANCE IN action {cdb[1] & 0x1F:#x}")
        options = cdb[2] & 0x07
        if options > 3:
            raise _invalid(f"REPORT SUPPORTED OPERATION CODES options {options}")
        return ReportOpcodes(options, bool(cdb[2] & 0x80), cdb[3], _u16(cdb, 4), _u32(cdb, 6))
    raise CdbError(INVALID_OPCODE, f"unsupported opcode {op:#04x}")


# -- parameter data -------------------------------------------------------------------

UNMAP_HEADER = struct.Struct(">HH4x")
UNMAP_DESCRIPTOR = struct.Struct(">QI4x")


def decode_unmap(data: bytes) -> list[tuple[int, int]]:
    """UNMAP's parameter list: (lba, blocks) per block descriptor (SBC-4 §5.32.2)."""
    if len(data) < UNMAP_HEADER.size:
        return []
    data_length, descriptors_length = UNMAP_HEADER.unpack_from(data)
    if data_length + 2 > len(data) or descriptors_length + 8 > len(data):
        raise CdbError(PARAMETER_LIST_LENGTH_ERROR, "UNMAP lengths run past the list")
    if descriptors_length % UNMAP_DESCRIPTOR.size:
        raise CdbError(INVALID_FIELD_IN_PARAMETERS, "UNMAP descriptors not 16 bytes each")
    body = data[8 : 8 + descriptors_length]
    return [(lba, n) for lba, n in UNMAP_DESCRIPTOR.iter_unpack(body)]
