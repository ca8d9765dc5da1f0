"""virtio-scsi as bytes (virtio 1.3 §5.6): request and response headers, the LUN
field, task management and the config space; pure, no I/O."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VIRTIO_ID_SCSI = 8

VIRTIO_SCSI_F_INOUT = 1 << 0
VIRTIO_SCSI_F_HOTPLUG = 1 << 1
VIRTIO_SCSI_F_CHANGE = 1 << 2

CONTROLQ, EVENTQ, FIRST_REQUESTQ = 0, 1, 2
QUEUE_SIZE = 128

CDB_SIZE = 32  # the defaults the driver may change in the config space
SENSE_SIZE = 96
MAX_CDB_SIZE = 260  # SPC-5's longest (a variable-length CDB)
MAX_SENSE_SIZE = 252  # SPC-5: sense data is at most 252 bytes


class Response(enum.IntEnum):
    OK = 0
    OVERRUN = 1
    ABORTED = 2
    BAD_TARGET = 3
    RESET = 4
    BUSY = 5
    TRANSPORT_FAILURE = 6
    TARGET_FAILURE = 7
    NEXUS_FAILURE = 8
    FAILURE = 9
    FUNCTION_SUCCEEDED = 10
    FUNCTION_REJECTED = 11
    INCORRECT_LUN = 12


FUNCTION_COMPLETE = Response.OK  # the TMF name of 0


class ControlType(enum.IntEnum):
    TMF = 0
    AN_QUERY = 1
    AN_SUBSCRIBE = 2


class Tmf(enum.IntEnum):
    ABORT_TASK = 0
    ABORT_TASK_SET = 1
    CLEAR_ACA = 2
    CLEAR_TASK_SET = 3
    I_T_NEXUS_RESET = 4
    LOGICAL_UNIT_RESET = 5
    QUERY_TASK = 6
    QUERY_TASK_SET = 7


#: lun[8], id (the tag), task_attr, prio, crn; then the CDB.
REQ_HEAD = struct.Struct("<8sQBBB")
#: sense_len, resid, status_qualifier, status, response; then the sense bytes.
RESP_HEAD = struct.Struct("<IIHBB")
#: type, subtype, lun[8], id.
TMF_REQ = struct.Struct("<II8sQ")
#: type, lun[8], event_requested.
AN_REQ = struct.Struct("<I8sI")
#: event_actual, response.
AN_RESP = struct.Struct("<IB")
#: num_queues, seg_max, max_sectors, cmd_per_lun, event_info_size, sense_size,
#: cdb_size, max_channel, max_target, max_lun.
CONFIG = struct.Struct("<IIIIIIIHHI")
CONFIG_SENSE_SIZE, CONFIG_CDB_SIZE = 20, 24  # the two fields the driver may write
EVENT_SIZE = 16  # struct virtio_scsi_event


class LunError(ValueError):
    """A LUN field the device cannot address; `response` is what the request gets."""

    def __init__(self, response: Response, what: str) -> None:
        super().__init__(what)
        self.response = response


def decode_lun(field: bytes) -> tuple[int, int]:
    """(target, lun) from the 8-byte LUN field (§5.6.6.1): byte 0 is 1, byte 1 the
    target, bytes 2-3 the LUN in flat space (40h) or peripheral (00h) addressing,
    the rest zero. The REPORT LUNS well-known LUN (C101h) comes back as lun -1."""
    if field[0] != 1:
        raise LunError(Response.BAD_TARGET, f"LUN field byte 0 is {field[0]:#x}, not 1")
    target, method = field[1], field[2] >> 6
    if any(field[4:]):
        raise LunError(Response.BAD_TARGET, "LUN field has a second level")
    if method == 1:
        return target, ((field[2] & 0x3F) << 8) | field[3]
    if method == 0 and field[2] == 0:
        return target, field[3]
    if field[2] == 0xC1 and field[3] == 0x01:
        return target, -1
    raise LunError(Response.BAD_TARGET, f"LUN address method {method}")


def encode_lun(target: int, lun: int) -> bytes:
    """The LUN field as the Linux driver fills it (flat space addressing)."""
    return bytes((1, target, 0x40 | (lun >> 8), lun & 0xFF)) + bytes(4)


@dataclass(frozen=True, slots=True)
class CmdRequest:
    lun: bytes
    tag: int
    task_attr: int
    prio: int
    crn: int
    cdb: bytes

    @classmethod
    def decode(cls, data: bytes, cdb_size: int) -> CmdRequest:
        if len(data) < REQ_HEAD.size + cdb_size:
            raise ValueError(
                f"request header of {len(data)} bytes, {REQ_HEAD.size + cdb_size} needed"
            )
        lun, tag, attr, prio, crn = REQ_HEAD.unpack_from(data)
        return cls(lun, tag, attr, prio, crn, data[REQ_HEAD.size : REQ_HEAD.size + cdb_size])

    def encode(self, cdb_size: int = CDB_SIZE) -> bytes:
        head = REQ_HEAD.pack(self.lun, self.tag, self.task_attr, self.prio, self.crn)
        return head + self.cdb[:cdb_size].ljust(cdb_size, b"\0")


@dataclass(frozen=True, slots=True)
class CmdResponse:
    response: Response
    status: int = 0
    sense: bytes = b""
    resid: int = 0

    def encode(self, sense_size: int = SENSE_SIZE) -> bytes:
        sense = self.sense[:sense_size]
        head = RESP_HEAD.pack(len(sense), self.resid, 0, self.status, self.response)
        return head + sense.ljust(sense_size, b"\0")

    @classmethod
    def decode(cls, data: bytes) -> CmdResponse:
        sense_len, resid, _qual, status, response = RESP_HEAD.unpack_from(data)
        sense = data[RESP_HEAD.size : RESP_HEAD.size + sense_len]
        return cls(Response(response), status, sense, resid)


@dataclass(frozen=True, slots=True)
class ScsiConfigSpace:
    num_queues: int
    seg_max: int = QUEUE_SIZE - 2
    max_sectors: int = 0xFFFF
    cmd_per_lun: int = QUEUE_SIZE
    event_info_size: int = EVENT_SIZE
    sense_size: int = SENSE_SIZE
    cdb_size: int = CDB_SIZE
    max_channel: int = 0
    max_target: int = 255
    max_lun: int = 16383

    def encode(self) -> bytes:
        return CONFIG.pack(
            self.num_queues,
            self.seg_max,
            self.max_sectors,
            self.cmd_per_lun,
            self.event_info_size,
            self.sense_size,
            self.cdb_size,
            self.max_channel,
            self.max_target,
            self.max_lun,
        )

    @classmethod
    def decode(cls, data: bytes) -> ScsiConfigSpace:
        return cls(*CONFIG.unpack(data))
