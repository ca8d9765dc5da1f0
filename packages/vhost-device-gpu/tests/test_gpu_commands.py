"""Every virtio-gpu command through the real socket, the core's frontend as the VMM and
a Python stand-in for QEMU's display end: what the guest gets back, and what the
display is shown, pixel for pixel."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from gpu_rig import (
    ABGR,
    ARGB,
    ASSIGN_UUID,
    BGRA,
    BGRX,
    CAPSET,
    CAPSET_INFO,
    DETACH,
    ERR_OOM,
    ERR_PARAMETER,
    ERR_RESOURCE,
    ERR_SCANOUT,
    ERR_UNSPEC,
    FEATURE_BLOB,
    FEATURE_EDID,
    FEATURE_UUID,
    GET_DISPLAY_INFO,
    GET_EDID,
    MOVE_CURSOR,
    OK_DISPLAY_INFO,
    OK_EDID,
    OK_NODATA,
    OK_UUID,
    RGBA,
    RGBX,
    UNREF,
    UPDATE_CURSOR,
    XBGR,
    XRGB,
    Gpu,
    attach,
    create_2d,
    create_blob,
    cursor,
    flush,
    gpu,
    hdr,
    resp_type,
    rid_cmd,
    scanout_blob,
    set_scanout,
    transfer,
)

from vhost_device_gpu.protocol import DisplayMode, Rect

#: A 4x2 picture as x8r8g8b8 words.
PICTURE = [0x112233, 0x445566, 0x778899, 0xAABBCC, 0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF]


def encode(words: list[int], fmt: int) -> bytes:
    """x8r8g8b8 words as the guest writes them in `fmt` (memory byte order)."""
    out = bytearray()
    for w in words:
        r, g, b = (w >> 16) & 0xFF, (w >> 8) & 0xFF, w & 0xFF
        out += {
            BGRX: bytes([b, g, r, 0]), BGRA: bytes([b, g, r, 0xFF]),
            ARGB: bytes([0xFF, r, g, b]), XRGB: bytes([0, r, g, b]),
            RGBA: bytes([r, g, b, 0xFF]), RGBX: bytes([r, g, b, 0]),
            XBGR: bytes([0, b, g, r]), ABGR: bytes([0xFF, b, g, r]),
        }[fmt]  # fmt: skip
    return bytes(out)


def draw(g: Gpu, rid: int, fmt: int, w: int, h: int, data: bytes) -> int:
    g.ok(create_2d(rid, fmt, w, h))
    gpa = g.guest_buffer(data)
    g.ok(attach(rid, [(gpa, len(data))]))
    g.ok(transfer(rid, 0, 0, w, h, 0))
    return gpa


def shown(g: Gpu, scanout: int = 0) -> list[int]:
    assert g.display is not None
    g.display.wait(lambda: scanout in g.display.surfaces and g.display.surfaces[scanout].updates)  # type: ignore[union-attr]
    s = g.display.surfaces[scanout]
    return [s.pixel(x, y) for y in range(s.height) for x in range(s.width)]


def settle(g: Gpu) -> None:
    """Every message the device queued for the display has been handled."""
    assert g.display is not None
    n = len(g.display.requests())
    g.cmd(hdr(GET_DISPLAY_INFO), 408)  # a reply-waiting request: all before it is written
    g.display.wait(lambda: len(g.display.log) > n)  # type: ignore[union-attr]


# -- features, config, display info, EDID ----------------------------------------------


def test_features_offered(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        offered = g.frontend.get_features()
    assert (
        offered & (FEATURE_EDID | FEATURE_UUID | FEATURE_BLOB)
        == FEATURE_EDID | FEATURE_UUID | FEATURE_BLOB
    )
    assert not offered & 1  # VIRGL: not in 2D
    assert not offered & (1 << 4)  # CONTEXT_INIT: needs 3D


def test_headless_offers_no_edid_and_one_default_scanout(tmp_path: Path) -> None:
    with gpu(tmp_path, headless=True, display=False) as g:
        assert not g.frontend.get_features() & FEATURE_EDID
        answer = g.cmd(hdr(GET_DISPLAY_INFO), 408)
        assert resp_type(answer) == OK_DISPLAY_INFO
        assert struct.unpack_from("<IIIIII", answer, 24) == (0, 0, 1280, 800, 1, 0)
        assert struct.unpack_from("<IIIIII", answer, 48) == (0, 0, 0, 0, 0, 0)
        assert resp_type(g.cmd(hdr(GET_EDID) + struct.pack("<I4x", 0))) == ERR_UNSPEC


def test_config_space(tmp_path: Path) -> None:
    with gpu(tmp_path, display=False) as g:
        events_read, events_clear, scanouts, capsets = struct.unpack(
            "<IIII", g.frontend.get_config(0, 16)
        )
        assert (events_read, events_clear, scanouts, capsets) == (0, 0, 1, 0)
        g.frontend.set_config(0, struct.pack("<IIII", 0, 1, 0, 0))  # QEMU writes it all


def test_display_info_is_qemus(tmp_path: Path) -> None:
    modes = [DisplayMode(Rect(0, 0, 1024, 768), True), DisplayMode(Rect(0, 0, 800, 600), False)]
    with gpu(tmp_path, modes=modes) as g:
        answer = g.cmd(hdr(GET_DISPLAY_INFO), 408)
        assert len(answer) == 408 and resp_type(answer) == OK_DISPLAY_INFO
        assert struct.unpack_from("<IIIIII", answer, 24) == (0, 0, 1024, 768, 1, 0)
        assert struct.unpack_from("<IIIIII", answer, 48) == (0, 0, 800, 600, 0, 0)
        assert g.display is not None
        assert g.display.set_features == 1  # EDID, what we speak of what it offered


def test_edid_is_qemus(tmp_path: Path) -> None:
    edid = bytes([0, 255, 255, 255, 255, 255, 255, 0]) + bytes(range(120))
    with gpu(tmp_path, edid=edid) as g:
        answer = g.cmd(hdr(GET_EDID) + struct.pack("<I4x", 0), 1056)
        assert resp_type(answer) == OK_EDID
        (size,) = struct.unpack_from("<I", answer, 24)
        assert answer[32 : 32 + size] == edid


def test_edid_of_a_scanout_that_does_not_exist(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert resp_type(g.cmd(hdr(GET_EDID) + struct.pack("<I4x", 16), 1056)) == ERR_PARAMETER


def test_edid_needs_the_feature(tmp_path: Path) -> None:
    with gpu(tmp_path, features=~FEATURE_EDID & ((1 << 64) - 1)) as g:
        assert resp_type(g.cmd(hdr(GET_EDID) + struct.pack("<I4x", 0), 1056)) == ERR_UNSPEC


# -- 2D: pixels ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [BGRX, BGRA, ARGB, XRGB, RGBA, RGBX, XBGR, ABGR])
def test_every_format_reaches_the_display_as_xrgb(tmp_path: Path, fmt: int) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, fmt, 4, 2, encode(PICTURE, fmt))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert shown(g) == PICTURE


def test_flush_sends_only_the_damage(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        gpa = draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert shown(g) == PICTURE
        assert g.display is not None
        before = g.display.update_bytes
        # the guest changes pixel (2, 1), transfers and flushes just that one
        g.frontend.ram.memory.write(gpa + (1 * 4 + 2) * 4, encode([0x123456], BGRX))  # type: ignore[union-attr]
        g.ok(transfer(1, 2, 1, 1, 1, (1 * 4 + 2) * 4))
        g.ok(flush(1, 2, 1, 1, 1))
        settle(g)
        assert g.display.update_bytes - before == 4
        assert shown(g) == PICTURE[:6] + [0x123456] + PICTURE[7:]


def test_a_scanout_shows_part_of_a_bigger_resource(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 1, 1, 2, 1))  # (1,1) 2x1: the green and blue pixels
        assert shown(g) == [0x00FF00, 0x0000FF]
        assert g.display is not None
        assert (g.display.surfaces[0].width, g.display.surfaces[0].height) == (2, 1)


def test_transfer_with_an_offset_lands_where_the_rect_says(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        data = bytearray(32)
        data[(1 * 4 + 1) * 4 : (1 * 4 + 3) * 4] = encode([0xABCDEF, 0x010203], BGRX)
        g.ok(attach(1, [(g.guest_buffer(bytes(data)), 32)]))
        g.ok(transfer(1, 1, 1, 2, 1, (1 * 4 + 1) * 4))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert shown(g) == [0, 0, 0, 0, 0, 0xABCDEF, 0x010203, 0]


def test_backing_in_several_scattered_entries(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        data = encode(PICTURE, BGRX)
        parts = [data[:5], data[5:20], data[20:]]  # not even whole pixels
        g.ok(attach(1, [(g.guest_buffer(p), len(p)) for p in parts]))
        g.ok(transfer(1, 0, 0, 4, 2, 0))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert shown(g) == PICTURE


def test_mode_change_resizes_the_surface(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        shown(g)
        draw(g, 2, BGRX, 2, 2, encode(PICTURE[4:], BGRX))
        g.ok(set_scanout(0, 2, 0, 0, 2, 2))
        settle(g)
        assert shown(g) == PICTURE[4:]
        assert g.display is not None
        assert (g.display.surfaces[0].width, g.display.surfaces[0].height) == (2, 2)


def test_null_mode_answers_and_shows_black(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="null") as g:
        draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        g.ok(flush(1, 0, 0, 4, 2))
        assert shown(g) == [0] * 8


# -- 2D: errors ----------------------------------------------------------------------


def test_create_with_id_0(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_2d(0, BGRX, 4, 4)) == ERR_RESOURCE


def test_create_with_an_id_in_use(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 4))
        assert g.status(create_2d(1, BGRX, 4, 4)) == ERR_RESOURCE


def test_create_with_an_unknown_format(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_2d(1, 5, 4, 4)) == ERR_PARAMETER


def test_create_empty(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_2d(1, BGRX, 0, 4)) == ERR_PARAMETER


def test_create_beyond_host_memory(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_2d(1, BGRX, 0xFFFFFFFF, 0xFFFFFFFF)) == ERR_OOM
        g.ok(create_2d(2, BGRX, 4096, 4096))  # 64 MiB
        g.ok(create_2d(3, BGRX, 4096, 4096))
        g.ok(create_2d(4, BGRX, 4096, 4096))
        assert g.status(create_2d(5, BGRX, 4096, 4096)) == ERR_OOM  # 256 MiB reached
        g.ok(rid_cmd(UNREF, 2))
        g.ok(create_2d(5, BGRX, 4096, 4096))  # freed memory counts again


def test_unref_unknown(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(rid_cmd(UNREF, 7)) == ERR_RESOURCE


def test_unref_of_the_shown_resource_disables_the_scanout(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        shown(g)
        g.ok(rid_cmd(UNREF, 1))
        settle(g)
        assert g.display is not None and 0 not in g.display.surfaces
        assert g.status(flush(1, 0, 0, 4, 2)) == ERR_RESOURCE


def test_set_scanout_errors(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        assert g.status(set_scanout(16, 1, 0, 0, 4, 2)) == ERR_SCANOUT
        assert g.status(set_scanout(0, 9, 0, 0, 4, 2)) == ERR_RESOURCE
        assert g.status(set_scanout(0, 1, 1, 0, 4, 2)) == ERR_PARAMETER  # past the right edge
        assert g.status(set_scanout(0, 1, 0, 0xFFFFFFFF, 4, 2)) == ERR_PARAMETER  # wraps in u32
        assert g.status(set_scanout(0, 1, 0, 0, 0, 0)) == ERR_PARAMETER
        g.ok(set_scanout(0, 0, 0, 0, 0, 0))  # resource 0: scanout off


def test_flush_errors(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        assert g.status(flush(9, 0, 0, 4, 2)) == ERR_RESOURCE
        assert g.status(flush(1, 0, 0, 5, 2)) == ERR_PARAMETER
        assert g.status(flush(1, 0xFFFFFFFF, 0, 2, 2)) == ERR_PARAMETER
        g.ok(flush(1, 0, 0, 4, 2))  # not on a scanout: nothing to show, still OK


def test_transfer_without_backing(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        assert g.status(transfer(1, 0, 0, 4, 2, 0)) == ERR_UNSPEC


def test_transfer_to_an_unknown_resource(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(transfer(3, 0, 0, 4, 2, 0)) == ERR_RESOURCE


def test_transfer_outside_the_resource(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 4, 2, bytes(32))
        assert g.status(transfer(1, 2, 0, 3, 1, 0)) == ERR_PARAMETER
        assert g.status(transfer(1, 0, 0xFFFFFFFF, 1, 2, 0)) == ERR_PARAMETER


def test_transfer_past_the_backing(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 2))
        g.ok(attach(1, [(g.guest_buffer(bytes(16)), 16)]))  # half of what 4x2 needs
        assert g.status(transfer(1, 0, 0, 4, 2, 0)) == ERR_PARAMETER
        assert g.status(transfer(1, 0, 0, 4, 1, 1 << 63)) == ERR_PARAMETER  # huge offset
        g.ok(transfer(1, 0, 0, 4, 1, 0))


def test_attach_to_an_unknown_resource(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(attach(4, [(g.guest_buffer(bytes(16)), 16)])) == ERR_RESOURCE


def test_attach_twice(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        g.ok(attach(1, [(g.guest_buffer(bytes(16)), 16)]))
        assert g.status(attach(1, [(g.guest_buffer(bytes(16)), 16)])) == ERR_UNSPEC


def test_attach_outside_guest_memory(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        assert g.status(attach(1, [(1 << 40, 16)])) == ERR_UNSPEC
        assert g.status(attach(1, [(g.guest_buffer(bytes(16)), 1 << 31)])) == ERR_UNSPEC
        assert g.status(attach(1, [((1 << 64) - 8, 16)])) == ERR_UNSPEC  # wraps


def test_attach_with_more_entries_than_sent(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        cmd = attach(1, [(g.guest_buffer(bytes(16)), 16)])
        lying = cmd[:28] + struct.pack("<I", 10) + cmd[32:]  # says 10 entries, carries 1
        assert g.status(lying) == ERR_UNSPEC


def test_attach_with_too_many_entries(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        cmd = attach(1, [])
        assert g.status(cmd[:28] + struct.pack("<I", 16385)) == ERR_UNSPEC


def test_detach(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 2, 2, bytes(16))
        g.ok(rid_cmd(DETACH, 1))
        assert g.status(rid_cmd(DETACH, 1)) == ERR_UNSPEC
        assert g.status(transfer(1, 0, 0, 2, 2, 0)) == ERR_UNSPEC
        assert g.status(rid_cmd(DETACH, 2)) == ERR_RESOURCE
        g.ok(attach(1, [(g.guest_buffer(bytes(16)), 16)]))  # attach again after detach


def test_capsets_are_none_in_2d(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(hdr(CAPSET_INFO) + struct.pack("<I4x", 0)) == ERR_PARAMETER
        assert g.status(hdr(CAPSET) + struct.pack("<II", 1, 0)) == ERR_PARAMETER


def test_assign_uuid(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        g.ok(create_2d(2, BGRX, 2, 2))
        first, again = g.cmd(rid_cmd(ASSIGN_UUID, 1), 40), g.cmd(rid_cmd(ASSIGN_UUID, 1), 40)
        other = g.cmd(rid_cmd(ASSIGN_UUID, 2), 40)
        assert resp_type(first) == OK_UUID and len(first) == 40
        assert first[24:] == again[24:] != other[24:]
        assert g.status(rid_cmd(ASSIGN_UUID, 3)) == ERR_RESOURCE


def test_assign_uuid_needs_the_feature(tmp_path: Path) -> None:
    with gpu(tmp_path, features=~FEATURE_UUID & ((1 << 64) - 1)) as g:
        g.ok(create_2d(1, BGRX, 2, 2))
        assert g.status(rid_cmd(ASSIGN_UUID, 1)) == ERR_UNSPEC


# -- blobs ---------------------------------------------------------------------------


def test_blob_scanout_with_stride_and_offset(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        stride, offset = 24, 8  # 4 pixels of 16 bytes a row, 8 bytes padding
        data = bytearray(offset + 2 * stride)
        for row in range(2):
            start = offset + row * stride
            data[start : start + 16] = encode(PICTURE[row * 4 : row * 4 + 4], XBGR)
        gpa = g.guest_buffer(bytes(data))
        g.ok(create_blob(1, len(data), [(gpa, 20), (gpa + 20, len(data) - 20)]))
        g.ok(scanout_blob(0, 1, 4, 2, XBGR, stride, offset))
        assert shown(g) == PICTURE
        g.frontend.ram.memory.write(gpa + offset + stride + 4, encode([0x0A0B0C], XBGR))  # type: ignore[union-attr]
        g.ok(transfer(1, 1, 1, 1, 1, 0))  # a no-op on a guest blob, answered OK
        g.ok(flush(1, 1, 1, 1, 1))
        settle(g)
        assert shown(g)[5] == 0x0A0B0C


def test_blob_needs_the_feature(tmp_path: Path) -> None:
    with gpu(tmp_path, features=~FEATURE_BLOB & ((1 << 64) - 1)) as g:
        gpa = g.guest_buffer(bytes(64))
        assert g.status(create_blob(1, 64, [(gpa, 64)])) == ERR_UNSPEC
        assert g.status(scanout_blob(0, 1, 4, 4, BGRX, 16)) == ERR_UNSPEC


def test_blob_of_host_memory_is_refused(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_blob(1, 4096, [], mem=2)) == ERR_PARAMETER


def test_blob_bigger_than_its_backing(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        gpa = g.guest_buffer(bytes(64))
        assert g.status(create_blob(1, 65, [(gpa, 64)])) == ERR_PARAMETER


def test_blob_outside_guest_memory(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_blob(1, 64, [(1 << 40, 64)])) == ERR_UNSPEC


def test_blob_scanout_past_the_blob(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        gpa = g.guest_buffer(bytes(64))
        g.ok(create_blob(1, 64, [(gpa, 64)]))
        assert g.status(scanout_blob(0, 1, 4, 4, BGRX, 16, offset=4)) == ERR_PARAMETER
        # stride x height overflows 32 (and 64) bits: caught, not wrapped
        assert g.status(scanout_blob(0, 1, 4, 0xFFFFFFFF, BGRX, 0xFFFFFFFF)) == ERR_PARAMETER
        assert g.status(scanout_blob(0, 1, 4, 4, BGRX, 8)) == ERR_PARAMETER  # stride < row
        assert g.status(scanout_blob(0, 1, 4, 4, 99, 16)) == ERR_PARAMETER  # format
        assert g.status(scanout_blob(0, 1, 4, 4, BGRX, 16, r=(2, 0, 4, 4))) == ERR_PARAMETER
        assert g.status(scanout_blob(16, 1, 4, 4, BGRX, 16)) == ERR_SCANOUT
        g.ok(scanout_blob(0, 1, 4, 4, BGRX, 16))


def test_blob_and_2d_scanout_commands_do_not_mix(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(1, BGRX, 4, 4))
        gpa = g.guest_buffer(bytes(64))
        g.ok(create_blob(2, 64, [(gpa, 64)]))
        assert g.status(scanout_blob(0, 1, 4, 4, BGRX, 16)) == ERR_PARAMETER
        assert g.status(set_scanout(0, 2, 0, 0, 4, 4)) == ERR_PARAMETER
        assert g.status(attach(2, [(gpa, 64)])) == ERR_PARAMETER
        assert g.status(rid_cmd(DETACH, 2)) == ERR_PARAMETER


# -- fences, framing, hostile requests -----------------------------------------------


def test_a_fenced_command_echoes_its_fence(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        answer = g.cmd(
            hdr(0x101, flags=1, fence=0x1234567890, ctx=5) + create_2d(1, BGRX, 2, 2)[24:]
        )
        assert struct.unpack("<IIQIB3x", answer) == (OK_NODATA, 1, 0x1234567890, 5, 0)
        answer = g.cmd(hdr(0x101, flags=3, fence=7, ctx=5, ring=2) + create_2d(1, BGRX, 2, 2)[24:])
        assert struct.unpack("<IIQIB3x", answer) == (ERR_RESOURCE, 3, 7, 5, 2)
        answer = g.cmd(hdr(0x101, flags=0, fence=9) + create_2d(2, BGRX, 2, 2)[24:])
        assert struct.unpack("<IIQIB3x", answer) == (OK_NODATA, 0, 0, 0, 0)


def test_a_request_shorter_than_a_header(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(b"\x01\x01\x00") == ERR_UNSPEC


def test_a_command_shorter_than_its_struct(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(create_2d(1, BGRX, 2, 2)[:30]) == ERR_UNSPEC


def test_an_unknown_command(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(hdr(0x1FF)) == ERR_UNSPEC


def test_3d_commands_without_a_3d_renderer(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.status(hdr(0x200) + bytes(72)) == ERR_UNSPEC  # CTX_CREATE
        assert g.status(hdr(0x207) + bytes(8)) == ERR_UNSPEC  # SUBMIT_3D


def test_a_request_without_room_for_its_answer(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        assert g.cmd(create_2d(1, BGRX, 2, 2), room=0) == b""
        assert g.status(create_2d(1, BGRX, 2, 2)) == ERR_RESOURCE  # it was still done
        assert len(g.cmd(hdr(GET_DISPLAY_INFO), room=10)) == 10  # cut to the room


def test_a_chain_outside_guest_memory(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        head = g.control.driver.add([(1 << 44, 24, False), (1 << 44, 24, True)])
        g.control.publish()
        assert g.control.wait_used(1) == [(head, 0)]
        g.ok(create_2d(1, BGRX, 2, 2))


# -- cursor --------------------------------------------------------------------------


def test_cursor_image_position_and_hide(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        words = [(0x80 << 24) | i for i in range(64 * 64)]
        image = b"".join(struct.pack("<I", w) for w in words)  # B8G8R8A8 = ARGB words
        draw(g, 5, BGRA, 64, 64, image)
        g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 10, 20, 5, 3, 4), 0)
        assert g.display is not None
        g.display.wait(lambda: g.display.cursor is not None)  # type: ignore[union-attr]
        c = g.display.cursor
        assert c is not None and (c.x, c.y, c.hot, c.image) == (10, 20, (3, 4), image)
        g.submit(g.cursorq, cursor(MOVE_CURSOR, 0, 30, 40, 5), 0)
        g.display.wait(lambda: g.display.cursor.x == 30)  # type: ignore[union-attr]
        assert (g.display.cursor.x, g.display.cursor.y, g.display.cursor.visible) == (30, 40, True)
        g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 30, 40, 0), 0)
        g.display.wait(lambda: not g.display.cursor.visible)  # type: ignore[union-attr]
        g.submit(g.cursorq, cursor(MOVE_CURSOR, 0, 1, 2, 5), 0)
        g.display.wait(lambda: g.display.cursor.visible)  # type: ignore[union-attr]
        g.submit(g.cursorq, cursor(MOVE_CURSOR, 0, 3, 4, 0), 0)  # resource 0: hidden
        g.display.wait(lambda: not g.display.cursor.visible)  # type: ignore[union-attr]
        assert (g.display.cursor.x, g.display.cursor.y) == (3, 4)


def test_cursor_of_an_x_format_is_opaque(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 5, BGRX, 64, 64, encode([0x123456] * 64 * 64, BGRX))
        answer = g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 1, 1, 5), 24)
        assert resp_type(answer) == OK_NODATA
        assert g.display is not None
        g.display.wait(lambda: g.display.cursor is not None)  # type: ignore[union-attr]
        assert g.display.cursor.image == struct.pack("<I", 0xFF123456) * 64 * 64  # type: ignore[union-attr]


def test_cursor_errors_are_answered_when_there_is_room(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        g.ok(create_2d(5, BGRX, 32, 32))
        assert (
            resp_type(g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 1, 1, 5), 24)) == ERR_PARAMETER
        )
        assert resp_type(g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 1, 1, 6), 24)) == ERR_RESOURCE
        assert resp_type(g.submit(g.cursorq, cursor(MOVE_CURSOR, 16, 1, 1, 5), 24)) == ERR_SCANOUT
        assert resp_type(g.submit(g.cursorq, hdr(UPDATE_CURSOR), 24)) == ERR_UNSPEC
        assert resp_type(g.submit(g.cursorq, hdr(0x101) + bytes(32), 24)) == ERR_UNSPEC
        assert g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 1, 1, 6), 0) == b""
        assert g.display is not None and g.display.cursor is None


# -- connections ---------------------------------------------------------------------


def test_each_connection_starts_afresh(tmp_path: Path) -> None:
    from vhost_device_gpu.args import GpuConfig
    from vhost_device_gpu.device import GpuBackend
    from vhost_user_core.frontend import Frontend
    from vhost_user_core.testing.harness import running_daemon

    path = tmp_path / "gpu.sock"
    with running_daemon(lambda: GpuBackend(GpuConfig("2d")), path):
        for _ in range(2):
            with Frontend.connect(path) as frontend:
                control, _cursor = frontend.start_device(2, 64)
                g = Gpu(frontend, control, _cursor, None)
                g.ok(create_2d(1, BGRX, 2, 2))  # id 1 is free again in a new connection


def test_the_display_going_away_fails_nothing(tmp_path: Path) -> None:
    with gpu(tmp_path) as g:
        draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert g.display is not None
        g.display.close()
        for _ in range(3):
            g.ok(flush(1, 0, 0, 4, 2))
        assert resp_type(g.cmd(hdr(GET_DISPLAY_INFO), 408)) == ERR_UNSPEC


def test_a_display_peer_that_breaks_the_protocol_is_abandoned(tmp_path: Path) -> None:
    """QEMU's end answering with a 1 MiB 'reply': that command fails, the display is
    given up (the stream is at an unknown place), and the guest goes on."""
    import socket
    import threading

    from vhost_device_gpu.args import GpuConfig
    from vhost_device_gpu.device import GpuBackend
    from vhost_user_core.testing.harness import connected_frontend

    ours, theirs = socket.socketpair()

    def liar() -> None:
        ours.recv(12)  # GET_PROTOCOL_FEATURES
        ours.sendall(struct.pack("<III", 1, 4, 1 << 20))

    thread = threading.Thread(target=liar)
    thread.start()
    try:
        with connected_frontend(lambda: GpuBackend(GpuConfig("2d")), tmp_path / "g.sock") as fe:
            fe.negotiate()
            fe.gpu_set_socket(theirs.fileno())
            fe.features = 0
            control, cursorq = fe.start_device(2, 64)
            g = Gpu(fe, control, cursorq, None)
            assert resp_type(g.cmd(hdr(GET_DISPLAY_INFO), 408)) == ERR_UNSPEC
            assert resp_type(g.cmd(hdr(GET_DISPLAY_INFO), 408)) == ERR_UNSPEC  # at once
            draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
            g.ok(set_scanout(0, 1, 0, 0, 4, 2))
            g.ok(flush(1, 0, 0, 4, 2))
    finally:
        thread.join()
        ours.close()
        theirs.close()


def test_backing_follows_a_new_memory_table(tmp_path: Path) -> None:
    """The VMM sends the memory table again (QEMU does on memory changes): backings are
    looked up in the new mapping, and transfers go on reading the guest's pages."""
    with gpu(tmp_path) as g:
        gpa = draw(g, 1, BGRX, 4, 2, encode(PICTURE, BGRX))
        ram = g.frontend.ram
        assert ram is not None
        g.frontend.set_mem_table([ram.region()], [ram.fd])
        ram.memory.write(gpa, encode([0x0F0E0D], BGRX))
        g.ok(transfer(1, 0, 0, 4, 2, 0))
        g.ok(set_scanout(0, 1, 0, 0, 4, 2))
        assert shown(g) == [0x0F0E0D] + PICTURE[1:]
