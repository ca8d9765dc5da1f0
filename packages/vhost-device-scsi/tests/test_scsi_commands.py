"""Every emulated command through a real socket, driven by the core's frontend as the
Linux virtio_scsi driver would: CDB variants, data, sense, bounds and write protect."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from scsi_driver import RESP_SIZE, cdb6, cdb10, cdb12, cdb16, scsi_driver

from vhost_device_scsi.host import FileImage, MemoryImage
from vhost_device_scsi.scsi.codec import Op
from vhost_device_scsi.virtio import CmdRequest, Response, encode_lun

BLOCKS = 2048  # the default 1 MiB image

GOOD, CHECK = 0, 2


def _sense(resp) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    s = resp.sense
    assert s[0] == 0x70 and len(s) == 18, s
    return s[2] & 0xF, s[12], s[13]


def _pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_test_unit_ready(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes(6))
        assert (resp.response, resp.status, resp.sense) == (Response.OK, GOOD, b"")


def test_standard_inquiry(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.INQUIRY, 0, 0, 0, 96, 0)), data_in=96)
        assert resp.status == GOOD and resp.resid == 96 - 36
        assert data[0] == 0 and data[2] == 0x07 and data[3] & 0x0F == 2
        assert data[8:16] == b"vhost-py" and data[16:32] == b"raw image       "


def test_inquiry_truncated_to_the_allocation_length(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.INQUIRY, 0, 0, 0, 5, 0)), data_in=96)
        assert resp.status == GOOD and len(data) == 5 and resp.resid == 91


def test_inquiry_page_code_without_evpd_is_invalid_field(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((Op.INQUIRY, 0, 0x80, 0, 96, 0)), data_in=96)
        assert resp.status == CHECK and _sense(resp) == (5, 0x24, 0)


def _vpd(d, page: int) -> bytes:  # type: ignore[no-untyped-def]
    resp, data = d.command(bytes((Op.INQUIRY, 1, page, 1, 0, 0)), data_in=256)
    assert resp.status == GOOD, resp
    assert data[1] == page and struct.unpack(">H", data[2:4])[0] == len(data) - 4
    return data


def test_vpd_supported_pages(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        assert _vpd(d, 0x00)[4:] == bytes((0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2))


def test_vpd_unit_serial_and_device_identification(tmp_path: Path) -> None:
    with scsi_driver(tmp_path, [MemoryImage(1 << 20), MemoryImage(1 << 20)]) as d:
        serial = _vpd(d, 0x80)[4:]
        assert len(serial) == 20 and serial.isalnum()
        ident = _vpd(d, 0x83)[4:]
        assert ident[:4] == bytes((0x02, 0x01, 0, 28)) and ident[4:] == b"vhost-py" + serial
        resp, other = d.command(bytes((Op.INQUIRY, 1, 0x80, 1, 0, 0)), lun=1, data_in=256)
        assert other[4:] != serial


def test_vpd_block_limits(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        page = _vpd(d, 0xB0)
        assert len(page) == 64 and page[4] & 1  # WSNZ
        max_unmap, descriptors = struct.unpack(">II", page[20:28])
        assert max_unmap > 0 and descriptors > 0


@pytest.mark.parametrize(("solid", "rate"), [(False, 0), (True, 1)])
def test_vpd_block_device_characteristics(tmp_path: Path, solid: bool, rate: int) -> None:
    with scsi_driver(tmp_path, solid_state=solid) as d:
        assert struct.unpack(">H", _vpd(d, 0xB1)[4:6])[0] == rate


def test_vpd_logical_block_provisioning(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        page = _vpd(d, 0xB2)
        assert page[5] & 0x80 and page[5] & 0x40  # LBPU, LBPWS
        assert (page[5] >> 2) & 7 == 1 and page[6] & 7 == 2  # LBPRZ, thin


def test_unknown_vpd_page_is_invalid_field(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((Op.INQUIRY, 1, 0x89, 0, 96, 0)), data_in=96)
        assert resp.status == CHECK and _sense(resp) == (5, 0x24, 0)


def test_read_capacity_10_and_16(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.READ_CAPACITY_10,)) + bytes(9), data_in=8)
        assert resp.status == GOOD and struct.unpack(">II", data) == (BLOCKS - 1, 512)
        cdb = struct.pack(">BBQIBB", Op.SERVICE_ACTION_IN_16, 0x10, 0, 32, 0, 0)
        resp, data = d.command(cdb, data_in=32)
        assert resp.status == GOOD and len(data) == 32
        last, size = struct.unpack(">QI", data[:12])
        assert (last, size) == (BLOCKS - 1, 512) and data[14] & 0xC0 == 0xC0  # LBPME, LBPRZ


def test_read_capacity_sees_a_grown_image(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        os.truncate(path, 2 << 20)
        _, data = d.command(bytes((Op.READ_CAPACITY_10,)) + bytes(9), data_in=8)
        assert struct.unpack(">II", data) == (2 * BLOCKS - 1, 512)


def test_unknown_service_action_in_is_invalid_opcode(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        cdb = struct.pack(">BBQIBB", Op.SERVICE_ACTION_IN_16, 0x12, 0, 32, 0, 0)
        resp, _ = d.command(cdb, data_in=32)
        assert resp.status == CHECK and _sense(resp) == (5, 0x20, 0)


@pytest.mark.parametrize(
    ("cdb", "write_cdb"),
    [
        (cdb6(Op.READ_6, 5, 3), cdb6(Op.WRITE_6, 5, 3)),
        (cdb10(Op.READ_10, 5, 3), cdb10(Op.WRITE_10, 5, 3)),
        (cdb12(Op.READ_12, 5, 3), cdb12(Op.WRITE_12, 5, 3)),
        (cdb16(Op.READ_16, 5, 3), cdb16(Op.WRITE_16, 5, 3)),
    ],
    ids=["6", "10", "12", "16"],
)
def test_write_then_read_every_size(tmp_path: Path, cdb: bytes, write_cdb: bytes) -> None:
    data = _pattern(3 * 512)
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(write_cdb, data_out=data)
        assert (resp.response, resp.status) == (Response.OK, GOOD)
        resp, got = d.command(cdb, data_in=3 * 512)
        assert (resp.status, resp.resid, got) == (GOOD, 0, data)


def test_read_6_with_length_0_moves_256_blocks(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, got = d.command(cdb6(Op.READ_6, 0, 0), data_in=256 * 512)
        assert resp.status == GOOD and len(got) == 256 * 512


def test_read_10_with_length_0_is_good_and_moves_nothing(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.READ_10, 0, 0))
        assert resp.status == GOOD


def test_write_lands_in_the_image_file(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))
    data = _pattern(4096, 3)
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        resp, _ = d.command(cdb10(Op.WRITE_10, 8, 8, flags=0x08), data_out=data)  # FUA
        assert resp.status == GOOD
    assert path.read_bytes()[4096:8192] == data


def test_read_sees_the_image_file(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    content = os.urandom(1 << 20)
    path.write_bytes(content)
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        resp, got = d.command(cdb16(Op.READ_16, 100, 16), data_in=16 * 512)
        assert resp.status == GOOD and got == content[100 * 512 : 116 * 512]


def test_data_spread_over_many_descriptors(tmp_path: Path) -> None:
    """A READ's data-in in 8 separate buffers, as the driver's scatterlist gives it."""
    with scsi_driver(tmp_path) as d:
        data = _pattern(8 * 512, 9)
        assert d.command(cdb10(Op.WRITE_10, 40, 8), data_out=data)[0].status == GOOD
        mem, ram = d.ram.memory, d.ram
        req = ram.alloc(51)
        mem.write(req, CmdRequest(encode_lun(0, 0), 99, 0, 0, 0, cdb10(Op.READ_10, 40, 8)).encode())
        resp = ram.alloc(RESP_SIZE)
        parts = [ram.alloc(512) for _ in range(8)]
        chain = [(req, 51, False), (resp, RESP_SIZE, True), *((p, 512, True) for p in parts)]
        head = d.queues[2].driver.add(chain)
        d.publish()
        used = d.wait(1)
        assert used[head] == RESP_SIZE + 8 * 512
        assert b"".join(mem.read(p, 512) for p in parts) == data


def test_read_past_the_end_is_lba_out_of_range(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb10(Op.READ_10, BLOCKS - 1, 2), data_in=1024)
        assert resp.status == CHECK and _sense(resp) == (5, 0x21, 0)


def test_write_past_the_end_is_lba_out_of_range(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb16(Op.WRITE_16, 1 << 40, 1), data_out=bytes(512))
        assert resp.status == CHECK and _sense(resp) == (5, 0x21, 0)


def test_read_at_the_last_block_is_fine(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        assert d.command(cdb10(Op.READ_10, BLOCKS - 1, 1), data_in=512)[0].status == GOOD


def test_read_only_lun_refuses_writes_with_data_protect(tmp_path: Path) -> None:
    with scsi_driver(tmp_path, [MemoryImage(1 << 20, read_only=True)]) as d:
        for cdb, out in [
            (cdb10(Op.WRITE_10, 0, 1), bytes(512)),
            (cdb16(Op.WRITE_SAME_16, 0, 1), bytes(512)),
            (bytes((Op.UNMAP,)) + bytes(6) + struct.pack(">HB", 24, 0), bytes(24)),
        ]:
            resp, _ = d.command(cdb, data_out=out)
            assert resp.status == CHECK and _sense(resp) == (7, 0x27, 0), cdb
        assert d.command(cdb10(Op.READ_10, 0, 1), data_in=512)[0].status == GOOD


def test_read_only_file_is_opened_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    path.write_bytes(bytes(1 << 20))
    path.chmod(0o444)
    image = FileImage(path, read_only=True)
    assert os.get_blocking(image.fd) and (os.stat(path).st_mode & 0o222) == 0
    with scsi_driver(tmp_path, [image]) as d:
        resp, _ = d.command(cdb10(Op.WRITE_10, 0, 1), data_out=bytes(512))
        assert _sense(resp) == (7, 0x27, 0)


@pytest.mark.parametrize("ten", [False, True])
def test_mode_sense_reports_write_protect(tmp_path: Path, ten: bool) -> None:
    for read_only in (False, True):
        with scsi_driver(tmp_path, [MemoryImage(1 << 20, read_only=read_only)]) as d:
            if ten:
                cdb = struct.pack(">BBBBxxxHB", Op.MODE_SENSE_10, 0x08, 0x3F, 0, 255, 0)
            else:
                cdb = bytes((Op.MODE_SENSE_6, 0x08, 0x3F, 0, 255, 0))
            resp, data = d.command(cdb, data_in=255)
            assert resp.status == GOOD
            specific = data[3] if ten else data[2]
            assert bool(specific & 0x80) is read_only and specific & 0x10  # WP, DPOFUA


def test_mode_sense_6_caching_page_with_block_descriptor(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.MODE_SENSE_6, 0, 0x08, 0, 255, 0)), data_in=255)
        assert resp.status == GOOD
        assert data[0] == len(data) - 1 and data[3] == 8
        assert (
            int.from_bytes(data[5:8], "big") == BLOCKS and int.from_bytes(data[9:12], "big") == 512
        )
        page = data[12:]
        assert page[0] == 0x08 and page[1] == 0x12 and page[2] & 0x04  # WCE


def test_mode_sense_10_long_lba_descriptor(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        cdb = struct.pack(">BBBBxxxHB", Op.MODE_SENSE_10, 0x10, 0x0A, 0, 255, 0)
        resp, data = d.command(cdb, data_in=255)
        assert resp.status == GOOD
        assert struct.unpack(">H", data[:2])[0] == len(data) - 2 and data[4] & 1
        assert struct.unpack(">H", data[6:8])[0] == 16
        assert struct.unpack(">Q4xI", data[8:24]) == (BLOCKS, 512)
        assert data[24] == 0x0A


def test_mode_sense_changeable_values_are_zero(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.MODE_SENSE_6, 0x08, 0x48, 0, 255, 0)), data_in=255)
        assert resp.status == GOOD and data[4] == 0x08 and not any(data[6:])


def test_mode_sense_saved_values_are_not_supported(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((Op.MODE_SENSE_6, 0x08, 0xC8, 0, 255, 0)), data_in=255)
        assert resp.status == CHECK and _sense(resp) == (5, 0x39, 0)


def test_mode_sense_unknown_page_is_invalid_field(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((Op.MODE_SENSE_6, 0x08, 0x1C, 0, 255, 0)), data_in=255)
        assert resp.status == CHECK and _sense(resp) == (5, 0x24, 0)


@pytest.mark.parametrize("descriptor", [False, True])
def test_request_sense_formats(tmp_path: Path, descriptor: bool) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(
            bytes((Op.REQUEST_SENSE, int(descriptor), 0, 0, 252, 0)), data_in=252
        )
        assert resp.status == GOOD
        assert data == (
            bytes((0x72, 0, 0, 0, 0, 0, 0, 0))
            if descriptor
            else bytes((0x70, 0, 0, 0, 0, 0, 0, 10)) + bytes(10)
        )


@pytest.mark.parametrize("op", [Op.SYNCHRONIZE_CACHE_10, Op.SYNCHRONIZE_CACHE_16])
def test_synchronize_cache(tmp_path: Path, op: int) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(1 << 20))
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        cdb = cdb10(op) if op == Op.SYNCHRONIZE_CACHE_10 else cdb16(op)
        assert d.command(cdb)[0].status == GOOD
        bad = cdb10(op, BLOCKS, 1) if op == Op.SYNCHRONIZE_CACHE_10 else cdb16(op, BLOCKS, 1)
        assert _sense(d.command(bad)[0]) == (5, 0x21, 0)


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_unmap_punches_holes(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(1 << 20))
    before = _allocated(path)
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        params = (
            struct.pack(">HH4x", 6 + 32, 32)
            + struct.pack(">QI4x", 0, 512)
            + struct.pack(">QI4x", 1024, 256)
        )
        cdb = bytes((Op.UNMAP,)) + bytes(6) + struct.pack(">HB", len(params), 0)
        resp, _ = d.command(cdb, data_out=params)
        assert resp.status == GOOD
        _, got = d.command(cdb10(Op.READ_10, 0, 8), data_in=4096)
        assert got == bytes(4096)
    assert before - _allocated(path) >= (512 + 256) * 512
    content = path.read_bytes()
    assert content[: 512 * 512] == bytes(512 * 512) and any(content[512 * 512 : 1024 * 512])


def test_unmap_past_the_end_is_lba_out_of_range(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        params = struct.pack(">HH4x", 22, 16) + struct.pack(">QI4x", BLOCKS - 1, 2)
        cdb = bytes((Op.UNMAP,)) + bytes(6) + struct.pack(">HB", len(params), 0)
        assert _sense(d.command(cdb, data_out=params)[0]) == (5, 0x21, 0)


def test_unmap_with_a_short_parameter_list_is_a_length_error(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        params = struct.pack(">HH4x", 22, 32) + struct.pack(">QI4x", 0, 2)  # says 2, has 1
        cdb = bytes((Op.UNMAP,)) + bytes(6) + struct.pack(">HB", len(params), 0)
        assert _sense(d.command(cdb, data_out=params)[0]) == (5, 0x1A, 0)


def test_write_same_16_fills_the_range(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        block = _pattern(512, 5)
        assert d.command(cdb16(Op.WRITE_SAME_16, 10, 4), data_out=block)[0].status == GOOD
        _, got = d.command(cdb10(Op.READ_10, 9, 6), data_in=6 * 512)
        assert got == bytes(512) + block * 4 + bytes(512)


def test_write_same_10(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        block = _pattern(512, 6)
        assert d.command(cdb10(Op.WRITE_SAME_10, 3, 2), data_out=block)[0].status == GOOD
        assert d.command(cdb10(Op.READ_10, 3, 2), data_in=1024)[1] == block * 2


def test_write_same_16_unmap_punches_a_hole(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(1 << 20))
    before = _allocated(path)
    with scsi_driver(tmp_path, [FileImage(path)]) as d:
        resp, _ = d.command(cdb16(Op.WRITE_SAME_16, 0, 1024, flags=0x08), data_out=bytes(512))
        assert resp.status == GOOD
    assert before - _allocated(path) >= 1024 * 512
    assert path.read_bytes()[: 1024 * 512] == bytes(1024 * 512)


def test_write_same_anchor_is_refused(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb16(Op.WRITE_SAME_16, 0, 1, flags=0x18), data_out=bytes(512))
        assert _sense(resp) == (5, 0x24, 0)


def test_write_same_of_zero_blocks_is_refused(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(cdb16(Op.WRITE_SAME_16, 0, 0), data_out=bytes(512))
        assert _sense(resp) == (5, 0x24, 0)


def test_report_luns(tmp_path: Path) -> None:
    images = [MemoryImage(1 << 20) for _ in range(3)]
    with scsi_driver(tmp_path, images) as d:
        resp, data = d.command(struct.pack(">BxBxxxIxx", Op.REPORT_LUNS, 0, 256), data_in=256)
        assert resp.status == GOOD
        assert struct.unpack(">I", data[:4])[0] == 24
        assert [data[8 + 8 * i : 16 + 8 * i] for i in range(3)] == [
            bytes((0, i)) + bytes(6) for i in range(3)
        ]


def test_report_luns_through_the_well_known_lun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        field = bytes((1, 0, 0xC1, 0x01)) + bytes(4)
        resp, data = d.command(
            struct.pack(">BxBxxxIxx", Op.REPORT_LUNS, 0, 64), data_in=64, lun_field=field
        )
        assert resp.status == GOOD and data[:4] == struct.pack(">I", 8)
        resp, _ = d.command(cdb10(Op.READ_10, 0, 1), data_in=512, lun_field=field)
        assert _sense(resp) == (5, 0x25, 0)


def test_report_luns_allocation_under_16_is_invalid(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(struct.pack(">BxBxxxIxx", Op.REPORT_LUNS, 0, 8), data_in=8)
        assert _sense(resp) == (5, 0x24, 0)


def test_report_supported_opcodes_all(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        cdb = struct.pack(">BBBBHIBB", Op.MAINTENANCE_IN, 0x0C, 0, 0, 0, 4096, 0, 0)
        resp, data = d.command(cdb, data_in=4096)
        assert resp.status == GOOD
        length = struct.unpack(">I", data[:4])[0]
        entries = {
            (data[4 + i], struct.unpack(">H", data[6 + i : 8 + i])[0]) for i in range(0, length, 8)
        }
        assert (Op.READ_16, 0) in entries and (Op.UNMAP, 0) in entries
        assert (Op.SERVICE_ACTION_IN_16, 0x10) in entries and len(entries) == length // 8 == 22


def test_report_supported_opcodes_one(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        cdb = struct.pack(">BBBBHIBB", Op.MAINTENANCE_IN, 0x0C, 1, Op.WRITE_SAME_16, 0, 64, 0, 0)
        resp, data = d.command(cdb, data_in=64)
        assert resp.status == GOOD and data[1] & 7 == 3 and struct.unpack(">H", data[2:4])[0] == 16
        assert data[4] == Op.WRITE_SAME_16
        cdb = struct.pack(">BBBBHIBB", Op.MAINTENANCE_IN, 0x0C, 1, 0xC0, 0, 64, 0, 0)
        resp, data = d.command(cdb, data_in=64)
        assert resp.status == GOOD and data[1] & 7 == 1  # not supported
        cdb = struct.pack(
            ">BBBBHIBB", Op.MAINTENANCE_IN, 0x0C, 2, Op.SERVICE_ACTION_IN_16, 0x10, 64, 0, 0
        )
        resp, data = d.command(cdb, data_in=64)
        assert resp.status == GOOD and data[1] & 7 == 3


@pytest.mark.parametrize("op", [0x04, 0x1B, 0x55, 0xC0, 0x7F])
def test_unsupported_opcode_is_invalid_command_operation_code(tmp_path: Path, op: int) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((op,)) + bytes(15), data_in=64)
        assert (resp.response, resp.status) == (Response.OK, CHECK)
        assert _sense(resp) == (5, 0x20, 0) and len(resp.sense) == 18


def test_naca_is_refused(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes((0, 0, 0, 0, 0, 0x04)))
        assert _sense(resp) == (5, 0x24, 0)


def test_missing_lun(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, data = d.command(bytes((Op.INQUIRY, 0, 0, 0, 36, 0)), lun=5, data_in=36)
        assert resp.status == GOOD and data[0] == 0x7F
        resp, _ = d.command(cdb10(Op.READ_10, 0, 1), lun=5, data_in=512)
        assert resp.status == CHECK and _sense(resp) == (5, 0x25, 0)
        resp, data = d.command(bytes((Op.REQUEST_SENSE, 0, 0, 0, 18, 0)), lun=5, data_in=18)
        assert resp.status == GOOD and data[2] == 5 and data[12] == 0x25
        resp, _ = d.command(bytes(6), lun=5)
        assert _sense(resp) == (5, 0x25, 0)


def test_lun_above_255_uses_flat_addressing(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        resp, _ = d.command(bytes(6), lun=300)
        assert resp.response == Response.OK and _sense(resp) == (5, 0x25, 0)


def test_other_targets_do_not_exist(tmp_path: Path) -> None:
    with scsi_driver(tmp_path) as d:
        field = bytes((1, 1, 0x40, 0)) + bytes(4)
        resp, _ = d.command(bytes(6), lun_field=field)
        assert resp.response == Response.BAD_TARGET


def test_second_lun_has_its_own_data(tmp_path: Path) -> None:
    with scsi_driver(tmp_path, [MemoryImage(1 << 20), MemoryImage(2 << 20)]) as d:
        d.command(cdb10(Op.WRITE_10, 0, 1), lun=1, data_out=b"\x01" * 512)
        assert d.command(cdb10(Op.READ_10, 0, 1), lun=0, data_in=512)[1] == bytes(512)
        assert d.command(cdb10(Op.READ_10, 0, 1), lun=1, data_in=512)[1] == b"\x01" * 512
        _, cap = d.command(bytes((Op.READ_CAPACITY_10,)) + bytes(9), lun=1, data_in=8)
        assert struct.unpack(">II", cap) == (2 * BLOCKS - 1, 512)


def test_second_request_queue(tmp_path: Path) -> None:
    with scsi_driver(tmp_path, queues=2) as d:
        d.command(cdb10(Op.WRITE_10, 7, 1), data_out=b"\x07" * 512, queue=2)
        resp, got = d.command(cdb10(Op.READ_10, 7, 1), data_in=512, queue=3)
        assert resp.status == GOOD and got == b"\x07" * 512


def test_write_from_many_descriptors(tmp_path: Path) -> None:
    """A WRITE's data-out in 8 buffers after the header, as a scatterlist gives it."""
    with scsi_driver(tmp_path) as d:
        data = _pattern(8 * 512, 11)
        mem, ram = d.ram.memory, d.ram
        req = ram.alloc(51)
        mem.write(
            req, CmdRequest(encode_lun(0, 0), 98, 0, 0, 0, cdb10(Op.WRITE_10, 60, 8)).encode()
        )
        parts = [ram.alloc(512) for _ in range(8)]
        for i, p in enumerate(parts):
            mem.write(p, data[i * 512 : (i + 1) * 512])
        resp = ram.alloc(RESP_SIZE)
        chain = [(req, 51, False), *((p, 512, False) for p in parts), (resp, RESP_SIZE, True)]
        head = d.queues[2].driver.add(chain)
        d.publish()
        assert d.wait(1)[head] == RESP_SIZE
        assert d.command(cdb10(Op.READ_10, 60, 8), data_in=4096)[1] == data


def test_images_in_memory_are_told_apart(tmp_path: Path) -> None:
    """tmpfs and memfd images run their I/O inline (nothing waits for a disk)."""
    assert MemoryImage(1 << 20).in_memory
    disk = Path("/var/tmp") / f"scsi-test-{os.getpid()}.img"
    shm = Path("/dev/shm") / f"scsi-test-{os.getpid()}.img"
    try:
        for path in (disk, shm):
            path.write_bytes(bytes(1 << 20))
        assert not FileImage(disk).in_memory
        assert FileImage(shm).in_memory
        with scsi_driver(tmp_path, [FileImage(shm)]) as d:
            data = _pattern(4096, 12)
            assert d.command(cdb10(Op.WRITE_10, 16, 8), data_out=data)[0].status == GOOD
            assert d.command(cdb10(Op.READ_10, 16, 8), data_in=4096)[1] == data
        assert shm.read_bytes()[8192 : 8192 + 4096] == data
    finally:
        disk.unlink(missing_ok=True)
        shm.unlink(missing_ok=True)
