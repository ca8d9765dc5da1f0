"""The one emulated target: its logical units by number, REPORT LUNS, and the answers
for a LUN with no disk behind it (SPC-5 §6.7.2, §6.33)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from . import codec
from .codec import CdbError, Command
from .lun import NO_LUN_INQUIRY, DataOut, Disk, Outcome, Reply

#: LUN numbers a target can hold here: flat space addressing (SAM-6 §4.7.7).
MAX_LUNS = 16384


def encode_lun(lun: int) -> bytes:
    """A LUN as REPORT LUNS lists it: peripheral device addressing below 256, flat
    space addressing above."""
    if lun < 256:
        return bytes((0, lun)) + bytes(6)
    return struct.pack(">H", 0x4000 | lun) + bytes(6)


class Target:
    def __init__(self, disks: Sequence[Disk]) -> None:
        if len(disks) > MAX_LUNS:
            raise ValueError(f"{len(disks)} LUNs; a target holds at most {MAX_LUNS}")
        self.disks = list(disks)

    def disk(self, lun: int) -> Disk | None:
        return self.disks[lun] if 0 <= lun < len(self.disks) else None

    def execute(self, lun: int, cmd: Command, data_out: DataOut) -> Outcome:
        """Run `cmd` on `lun`, which may hold no disk."""
        if isinstance(cmd, codec.ReportLuns):
            return Reply(data=self.report_luns(cmd))
        disk = self.disk(lun)
        if disk is not None:
            return disk.execute(cmd, data_out)
        if isinstance(cmd, codec.Inquiry):
            if cmd.evpd:
                return Reply.check(codec.LUN_NOT_SUPPORTED)
            return Reply(data=NO_LUN_INQUIRY[: cmd.allocation])
        if isinstance(cmd, codec.RequestSense):
            # SPC-5 §5.12: REQUEST SENSE to a missing LUN reports it as sense data.
            data = codec.LUN_NOT_SUPPORTED.encode(cmd.descriptor)
            return Reply(data=data[: cmd.allocation])
        return Reply.check(codec.LUN_NOT_SUPPORTED)

    def report_luns(self, cmd: codec.ReportLuns) -> bytes:
        luns = b"".join(encode_lun(i) for i in range(len(self.disks)))
        if cmd.select == 0x01:  # well-known LUNs only: we have none
            luns = b""
        return (struct.pack(">I4x", len(luns)) + luns)[: cmd.allocation]


def decode_or_reply(cdb: bytes) -> Command | Reply:
    """The decoded command, or the CHECK CONDITION a bad CDB gets."""
    try:
        return codec.decode(cdb)
    except CdbError as exc:
        return Reply.check(exc.sense)
