"""The virtio-scsi transport through a real socket: out-of-order completion, task
management on the control queue, the config space, and hostile requests (each its own
test; after each the device still serves a good command)."""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from scsi_driver import RESP_SIZE, ScsiDriver, cdb10, scsi_driver

from vhost_device_scsi.host import MemoryImage
from vhost_device_scsi.scsi.codec import Op
from vhost_device_scsi.virtio import (
    AN_REQ,
    AN_RESP,
    CmdRequest,
    Response,
    ScsiConfigSpace,
    Tmf,
    encode_lun,
)
from vhost_user_core import ProtocolError

GOOD, CHECK = 0, 2


class GatedImage(MemoryImage):
    """A memory image whose reads at `gate_offset` wait until the test opens the gate:
    a slow request, on demand."""

    def __init__(self, size: int, gate_offset: int) -> None:
        super().__init__(size)
        self.gate_offset = gate_offset
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.waiting = threading.Semaphore(0)

    def read_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        return False  # every read goes to the pool, where the gate is

    def write_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        return False

    def direct_io(self) -> None:
        return None  # nor does the C fast path read it itself

    def readinto(self, views: Sequence[memoryview], offset: int) -> int:
        if offset == self.gate_offset:
            self.entered.set()
            self.waiting.release()
            assert self.gate.wait(10)
        return super().readinto(views, offset)


def _still_serves(d: ScsiDriver) -> None:
    resp, _ = d.command(bytes(6))
    assert (resp.response, resp.status) == (Response.OK, GOOD)


def test_a_slow_read_does_not_hold_up_a_fast_one(tmp_path: Path) -> None:
    image = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [image]) as d:
        slow = d.post(cdb10(Op.READ_10, 0, 1), data_in=512)
        d.publish()
        assert image.entered.wait(5)
        fast = d.post(cdb10(Op.READ_10, 8, 1), data_in=512)
        d.publish()
        assert list(d.wait(1)) == [fast.head]
        image.gate.set()
        assert list(d.wait(1)) == [slow.head]
        assert d.result(slow)[0].status == GOOD


def test_many_requests_in_flight_all_complete(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        sent = [
            d.post(cdb10(Op.WRITE_10, i * 8, 8), data_out=bytes((i,)) * 4096) for i in range(32)
        ]
        d.publish()
        assert set(d.wait(32)) == {s.head for s in sent}
        reads = [d.post(cdb10(Op.READ_10, i * 8, 8), data_in=4096) for i in range(32)]
        d.publish()
        d.wait(32)
        assert [d.result(r)[1] for r in reads] == [bytes((i,)) * 4096 for i in range(32)]


def test_abort_task_waits_for_the_command_then_reports_it_aborted(tmp_path: Path) -> None:
    image = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [image]) as d:
        slow = d.post(cdb10(Op.READ_10, 0, 1), data_in=512, tag=77)
        d.publish()
        assert image.entered.wait(5)
        tmf = d.tmf(Tmf.ABORT_TASK, tag=77)
        with pytest.raises(TimeoutError):
            d.queues[0].wait_used(1, timeout=0.3)  # not before the command is back
        image.gate.set()
        assert list(d.wait(1)) == [slow.head]
        assert d.result(slow)[0].response == Response.ABORTED
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}
        assert d.tmf_response(tmf) == Response.OK  # FUNCTION COMPLETE


def test_abort_task_of_a_command_not_started_skips_its_io(tmp_path: Path) -> None:
    image = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [image]) as d:
        pool_threads = 4  # every one of them held at the gate
        blockers = [
            d.post(cdb10(Op.READ_10, 0, 1), data_in=512, tag=i) for i in range(pool_threads)
        ]
        d.publish()
        for _ in blockers:
            assert image.waiting.acquire(timeout=5)
        queued = d.post(cdb10(Op.WRITE_10, 100, 1), data_out=b"\xaa" * 512, tag=99)
        d.publish()
        tmf = d.tmf(Tmf.ABORT_TASK, tag=99)
        # The control queue is served in order: once this query is answered, the
        # abort has been seen (and the write is still in flight, being held back).
        query = d.tmf(Tmf.QUERY_TASK, tag=99)
        assert dict(d.queues[0].wait_used(1)) == {query.head: 1}
        assert d.tmf_response(query) == Response.FUNCTION_SUCCEEDED
        image.gate.set()
        d.wait(len(blockers) + 1)
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}
        assert d.result(queued)[0].response == Response.ABORTED
        assert d.command(cdb10(Op.READ_10, 100, 1), data_in=512)[1] == bytes(512)


def test_abort_task_of_an_unknown_tag_completes_at_once(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        tmf = d.tmf(Tmf.ABORT_TASK, tag=12345)
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}
        assert d.tmf_response(tmf) == Response.OK


def test_logical_unit_reset_aborts_only_that_luns_commands(tmp_path: Path) -> None:
    gated = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [gated, MemoryImage(1 << 20)]) as d:
        slow = d.post(cdb10(Op.READ_10, 0, 1), data_in=512)
        d.publish()
        assert gated.entered.wait(5)
        tmf = d.tmf(Tmf.LOGICAL_UNIT_RESET, lun=1)
        assert d.tmf_response(tmf) in (0xFF, Response.OK)
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}  # nothing of LUN 1 in flight
        tmf = d.tmf(Tmf.LOGICAL_UNIT_RESET, lun=0)
        gated.gate.set()
        d.wait(1)
        assert d.result(slow)[0].response == Response.ABORTED
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}


def test_i_t_nexus_reset_aborts_everything(tmp_path: Path) -> None:
    gated = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [gated]) as d:
        slow = d.post(cdb10(Op.READ_10, 0, 1), data_in=512)
        d.publish()
        assert gated.entered.wait(5)
        tmf = d.tmf(Tmf.I_T_NEXUS_RESET)
        gated.gate.set()
        d.wait(1)
        assert d.result(slow)[0].response == Response.ABORTED
        assert dict(d.queues[0].wait_used(1)) == {tmf.head: 1}
        _still_serves(d)


def test_query_task(tmp_path: Path) -> None:
    gated = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [gated]) as d:
        d.post(cdb10(Op.READ_10, 0, 1), data_in=512, tag=5)
        d.publish()
        assert gated.entered.wait(5)
        found = d.tmf(Tmf.QUERY_TASK, tag=5)
        d.queues[0].wait_used(1)
        missing = d.tmf(Tmf.QUERY_TASK, tag=6)
        d.queues[0].wait_used(1)
        assert d.tmf_response(found) == Response.FUNCTION_SUCCEEDED
        assert d.tmf_response(missing) == Response.OK
        gated.gate.set()
        d.wait(1)
        _still_serves(d)


@pytest.mark.parametrize(
    ("subtype", "lun", "field", "expected"),
    [
        (Tmf.CLEAR_ACA, 0, None, Response.FUNCTION_REJECTED),
        (99, 0, None, Response.FUNCTION_REJECTED),
        (Tmf.LOGICAL_UNIT_RESET, 7, None, Response.INCORRECT_LUN),
        (Tmf.ABORT_TASK, 0, bytes((1, 3, 0x40, 0)) + bytes(4), Response.BAD_TARGET),
        (Tmf.ABORT_TASK, 0, bytes((2, 0, 0x40, 0)) + bytes(4), Response.BAD_TARGET),
    ],
    ids=["clear-aca", "unknown", "missing-lun", "other-target", "bad-lun-field"],
)
def test_tmf_refusals(
    tmp_path: Path, subtype: int, lun: int, field: bytes | None, expected: int
) -> None:
    with scsi_driver(tmp_path) as d:
        tmf = d.tmf(subtype, lun=lun, lun_field=field)
        d.queues[0].wait_used(1)
        assert d.tmf_response(tmf) == expected
        _still_serves(d)


def test_asynchronous_notification_query_reports_no_events(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        mem, ram = d.ram.memory, d.ram
        req, resp = ram.alloc(AN_REQ.size), ram.alloc(AN_RESP.size)
        mem.write(req, AN_REQ.pack(1, encode_lun(0, 0), 0xFF))
        mem.write(resp, b"\xff" * AN_RESP.size)
        head = d.queues[0].driver.add([(req, AN_REQ.size, False), (resp, AN_RESP.size, True)])
        d.queues[0].publish()
        assert dict(d.queues[0].wait_used(1)) == {head: AN_RESP.size}
        assert AN_RESP.unpack(mem.read(resp, AN_RESP.size)) == (0, Response.OK)


def test_get_vring_base_returns_the_commands_in_flight_first(tmp_path: Path) -> None:
    image = GatedImage(1 << 20, gate_offset=0)
    with scsi_driver(tmp_path, [image]) as d:
        slow = d.post(cdb10(Op.READ_10, 0, 1), data_in=512)
        d.publish()
        assert image.entered.wait(5)
        threading.Timer(0.2, image.gate.set).start()
        assert d.frontend.get_vring_base(2) == 1
        assert d.queues[2].driver.get_used() == [(slow.head, RESP_SIZE + 512)]


# -- config space ---------------------------------------------------------------------


def test_config_space_is_upstreams(tmp_path: Path) -> None:
    with scsi_driver(tmp_path, queues=2) as d:
        config = ScsiConfigSpace.decode(d.frontend.get_config(0, 36))
        assert config == ScsiConfigSpace(
            num_queues=2,
            seg_max=126,
            max_sectors=0xFFFF,
            cmd_per_lun=128,
            event_info_size=16,
            sense_size=96,
            cdb_size=32,
            max_channel=0,
            max_target=255,
            max_lun=16383,
        )


def test_set_config_changes_sense_and_cdb_size(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        d.frontend.set_config(20, struct.pack("<II", 32, 16))
        config = ScsiConfigSpace.decode(d.frontend.get_config(0, 36))
        assert (config.sense_size, config.cdb_size) == (32, 16)
        # The header now carries a 16-byte CDB and the response 32 sense bytes.
        header = CmdRequest(encode_lun(0, 0), 1, 0, 0, 0, bytes((0xC0,)) + bytes(15)).encode(16)
        sent = d.post(b"", header=header, resp_room=12 + 32)
        d.publish()
        assert d.wait(1)[sent.head] == 12 + 32
        sense_len = struct.unpack("<I", d.ram.memory.read(sent.resp, 4))[0]
        assert sense_len == 18


@pytest.mark.parametrize(
    ("offset", "data"),
    [
        (0, struct.pack("<I", 4)),
        (20, struct.pack("<I", 4)),
        (24, struct.pack("<I", 4096)),
        (22, b"\0\0"),
    ],
    ids=["num_queues", "sense-too-small", "cdb-too-big", "unaligned"],
)
def test_set_config_refusals_are_answered_and_change_nothing(
    tmp_path: Path, offset: int, data: bytes
) -> None:
    with scsi_driver(tmp_path) as d:
        with pytest.raises(ProtocolError, match="rejected"):  # a failed REPLY_ACK
            d.frontend.set_config(offset, data)
        config = ScsiConfigSpace.decode(d.frontend.get_config(0, 36))
        assert (config.num_queues, config.sense_size, config.cdb_size) == (1, 96, 32)
        _still_serves(d)


# -- hostile requests -------------------------------------------------------------------


def test_chain_outside_guest_memory_is_completed_empty(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        head = d.queues[2].driver.add([(1 << 44, 51, False), (1 << 44, 108, True)])
        d.publish()
        assert d.wait(1) == {head: 0}
        _still_serves(d)


def test_no_response_buffer_is_completed_empty(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        sent = d.post(bytes(6), resp_room=0)
        d.publish()
        assert d.wait(1) == {sent.head: 0}
        _still_serves(d)


def test_response_buffer_smaller_than_the_header_is_completed_empty(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        sent = d.post(bytes(6), resp_room=RESP_SIZE - 1)
        d.publish()
        assert d.wait(1) == {sent.head: 0}
        _still_serves(d)


def test_short_request_header_is_a_failure(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        sent = d.post(b"", header=bytes((1, 0, 0x40, 0)) + bytes(20))
        d.publish()
        assert d.wait(1) == {sent.head: RESP_SIZE}
        assert d.result(sent)[0].response == Response.FAILURE
        _still_serves(d)


def test_read_with_data_out_instead_of_data_in_is_an_overrun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.READ_10, 0, 1), data_out=bytes(512))
        assert resp.response == Response.OVERRUN
        _still_serves(d)


def test_read_into_too_small_a_buffer_is_an_overrun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.READ_10, 0, 4), data_in=1024)
        assert resp.response == Response.OVERRUN
        _still_serves(d)


def test_write_with_too_little_data_is_an_overrun_and_writes_nothing(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.WRITE_10, 0, 2), data_out=b"\x55" * 512)
        assert resp.response == Response.OVERRUN
        assert d.command(cdb10(Op.READ_10, 0, 2), data_in=1024)[1] == bytes(1024)


def test_write_with_a_data_in_buffer_is_an_overrun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.WRITE_10, 0, 1), data_out=bytes(512), data_in=512)
        assert resp.response == Response.OVERRUN
        _still_serves(d)


def test_inquiry_with_data_out_is_an_overrun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((Op.INQUIRY, 0, 0, 0, 36, 0)), data_out=bytes(36), data_in=36)
        assert resp.response == Response.OVERRUN


@pytest.mark.parametrize(
    "field",
    [
        bytes((0, 0, 0x40, 0)) + bytes(4),  # byte 0 not 1
        bytes((1, 0, 0x40, 0, 0, 1, 0, 0)),  # a second level
        bytes((1, 0, 0x80, 0)) + bytes(4),  # logical unit addressing
        bytes((1, 0, 0xC0, 0x02)) + bytes(4),  # an extended address that is not REPORT LUNS
    ],
    ids=["byte0", "second-level", "method-2", "extended"],
)
def test_malformed_lun_field_is_bad_target(tmp_path: Path, field: bytes) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes(6), lun_field=field)
        assert resp.response == Response.BAD_TARGET
        _still_serves(d)


def test_cdb_longer_than_the_configured_size_is_not_read(tmp_path: Path) -> None:
    """With cdb_size 16, a header sized for 32 bytes of CDB puts its tail in the data-out
    area: a 16-byte CDB is decoded and the extra bytes make the TUR a two-way request."""
    with scsi_driver(tmp_path) as d:
        d.frontend.set_config(24, struct.pack("<I", 16))
        header = CmdRequest(encode_lun(0, 0), 1, 0, 0, 0, bytes(6)).encode(32)
        sent = d.post(b"", header=header)
        d.publish()
        d.wait(1)
        assert d.result(sent)[0].response == Response.OK  # extra readable bytes, no data-in


def test_variable_length_cdb_is_an_invalid_opcode(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((0x7F, 0, 0, 0, 0, 0, 0, 24)) + bytes(24))
        assert resp.status == CHECK and resp.sense[12] == 0x20


def test_control_request_of_unknown_type_fails(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        mem, ram = d.ram.memory, d.ram
        req, resp = ram.alloc(24), ram.alloc(1)
        mem.write(req, struct.pack("<I", 7) + bytes(20))
        head = d.queues[0].driver.add([(req, 24, False), (resp, 1, True)])
        d.queues[0].publish()
        assert dict(d.queues[0].wait_used(1)) == {head: 1}
        assert mem.read(resp, 1)[0] == Response.FAILURE


def test_short_tmf_fails(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        mem, ram = d.ram.memory, d.ram
        req, resp = ram.alloc(8), ram.alloc(1)
        mem.write(req, bytes(8))
        head = d.queues[0].driver.add([(req, 8, False), (resp, 1, True)])
        d.queues[0].publish()
        assert dict(d.queues[0].wait_used(1)) == {head: 1}
        assert mem.read(resp, 1)[0] == Response.FAILURE
