"""The virglrenderer mode through the real socket, the core's frontend as the VMM and the
guest's commands encoded here: capsets by id, a context rendering a clear that is read
back and scanned out, fences, the 2D commands on virglrenderer's resources, and every
refusal. virglrenderer renders for real (llvmpipe, surfaceless EGL)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from gpu_rig import (
    CAPSET,
    CAPSET_INFO,
    ERR_CONTEXT,
    ERR_OOM,
    ERR_PARAMETER,
    ERR_RESOURCE,
    ERR_UNSPEC,
    OK_CAPSET,
    OK_NODATA,
    UNREF,
    UPDATE_CURSOR,
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
from virgl_rig import (
    BGRX,
    CREATE_3D,
    CTX_ATTACH,
    CTX_CREATE,
    CTX_DESTROY,
    CTX_DETACH,
    FEATURE_BLOB,
    FEATURE_CONTEXT_INIT,
    FEATURE_VIRGL,
    FLAG_FENCE,
    FLAG_RING,
    FROM_HOST_3D,
    MAP_BLOB,
    OK_CAPSET_INFO,
    TO_HOST_3D,
    H,
    W,
    clear_stream,
    create_3d,
    ctx_create,
    ctx_res,
    submit,
    transfer_3d,
    vcmd,
)

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.protocol import Rect
from vhost_device_gpu.renderer import Dmabuf, Renderer, ScanoutSource
from vhost_device_gpu.renderer.virgl import VirglRenderer
from vhost_device_gpu.testing import FakeQemuDisplay


def render_target(g: Gpu, ctx: int, rid: int) -> int:
    """A context with a 64x64 BGRX render target attached, backed by guest memory."""
    g.ok(ctx_create(ctx))
    g.ok(create_3d(rid))
    gpa = g.guest_buffer(bytes(W * H * 4))
    g.ok(attach(rid, [(gpa, W * H * 4)]))
    g.ok(ctx_res(CTX_ATTACH, ctx, rid))
    return gpa


def readback(g: Gpu, ctx: int, rid: int, gpa: int) -> bytes:
    g.ok(transfer_3d(FROM_HOST_3D, rid, ctx))
    ram = g.frontend.ram
    assert ram is not None
    return ram.memory.read(gpa, W * H * 4)


def test_capsets_by_id_and_the_config_count(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        assert struct.unpack_from("<I", g.frontend.get_config(12, 4))[0] == 2  # num_capsets
        infos = []
        for index in (0, 1):
            answer = g.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", index), 40)
            assert resp_type(answer) == OK_CAPSET_INFO
            infos.append(struct.unpack_from("<III", answer, 24))
        assert [i[:2] for i in infos] == [(1, 1), (2, 2)]  # (id, max_version)
        assert g.status(hdr(CAPSET_INFO) + struct.pack("<I4x", 2)) == ERR_PARAMETER
        size = infos[1][2]
        answer = g.cmd(hdr(CAPSET) + struct.pack("<II", 2, 2), 24 + size)
        assert resp_type(answer) == OK_CAPSET and len(answer) == 24 + size
        assert struct.unpack_from("<I", answer, 24)[0] == 2  # virgl_caps_v2: max_version
        assert g.status(hdr(CAPSET) + struct.pack("<II", 5, 0)) == ERR_PARAMETER
        assert g.status(hdr(CAPSET) + struct.pack("<II", 1, 9)) == ERR_PARAMETER


def test_one_capset_is_found_by_its_id_not_its_index(tmp_path: Path) -> None:
    """Upstream #969: with only virgl2 offered it is index 0, and GET_CAPSET asks by id."""
    with gpu(tmp_path, mode="virglrenderer", capsets=("virgl2",)) as g:
        assert struct.unpack_from("<I", g.frontend.get_config(12, 4))[0] == 1
        answer = g.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", 0), 40)
        capset_id, version, size = struct.unpack_from("<III", answer, 24)
        assert (capset_id, version) == (2, 2)
        answer = g.cmd(hdr(CAPSET) + struct.pack("<II", 2, 2), 24 + size)
        assert resp_type(answer) == OK_CAPSET
        assert g.status(hdr(CAPSET) + struct.pack("<II", 1, 1)) == ERR_PARAMETER


def test_features_virgl_and_context_init_not_blobs(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        offered = g.frontend.get_features()
        assert offered & FEATURE_VIRGL and offered & FEATURE_CONTEXT_INIT
        assert not offered & FEATURE_BLOB


def test_a_clear_is_rendered_read_back_and_scanned_out(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        gpa = render_target(g, 1, 1)
        answer = g.cmd(submit(1, clear_stream(1, (1.0, 0.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=9))
        assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, 9)
        assert readback(g, 1, 1, gpa) == bytes([0, 0, 255, 255]) * (W * H)  # BGRX red
        # the scanout reads the pixels back from the renderer: red on the display
        assert g.display is not None
        g.ok(set_scanout(0, 1, 0, 0, W, H))
        assert g.display.wait(lambda: 0 in g.display.surfaces and g.display.surfaces[0].updates)
        surface = g.display.surfaces[0]
        assert (surface.width, surface.height) == (W, H)
        assert {surface.pixel(x, y) for x in range(W) for y in range(H)} == {0xFF0000}
        # a second clear and a flush of part of it: the display follows
        g.ok(submit(1, clear_stream(1, (0.0, 0.0, 1.0, 1.0))))
        g.ok(flush(1, 0, 0, W, H // 2))
        assert g.display.wait(lambda: g.display.surfaces[0].pixel(0, 0) == 0x0000FF)
        assert surface.pixel(0, H // 2 - 1) == 0x0000FF and surface.pixel(0, H // 2) == 0xFF0000


def test_2d_commands_on_virglrenderer_resources_keep_rows_top_down(tmp_path: Path) -> None:
    """RESOURCE_CREATE_2D is a Y_0_TOP texture in virglrenderer: what the guest wrote
    row by row is shown row by row (and a partial flush shows only its rows)."""
    pattern = b"".join(
        bytes([(x * 4) & 0xFF, (y * 4) & 0xFF, (x ^ y) & 0xFF, 0])
        for y in range(H)
        for x in range(W)
    )
    with gpu(tmp_path, mode="virglrenderer") as g:
        assert g.display is not None
        g.ok(create_2d(7, BGRX, W, H))
        gpa = g.guest_buffer(pattern)
        g.ok(attach(7, [(gpa, len(pattern))]))
        g.ok(transfer(7, 0, 0, W, H, 0))
        g.ok(set_scanout(0, 7, 0, 0, W, H))
        assert g.display.wait(lambda: 0 in g.display.surfaces and g.display.surfaces[0].updates)
        surface = g.display.surfaces[0]
        for y in (0, 1, H // 2, H - 1):
            for x in (0, 3, W - 1):
                assert surface.pixel(x, y) == ((x ^ y) << 16 | (y * 4) << 8 | (x * 4)) & 0xFFFFFF
        # the row at y=5 rewritten in guest memory and flushed alone
        ram = g.frontend.ram
        assert ram is not None
        ram.memory.write(gpa + 5 * W * 4, bytes([0, 0, 0xFF, 0]) * W)
        g.ok(transfer(7, 0, 5, W, 1, 5 * W * 4))
        g.ok(flush(7, 0, 5, W, 1))
        assert g.display.wait(lambda: surface.pixel(9, 5) == 0xFF0000)
        assert surface.pixel(9, 4) != 0xFF0000 and surface.pixel(9, 6) != 0xFF0000
        g.ok(rid_cmd(UNREF, 7))
        assert g.display.wait(lambda: 0 not in g.display.surfaces)  # unref disables it


def test_transfers_to_and_from_host_round_trip(tmp_path: Path) -> None:
    data = bytes(range(256)) * (W * H * 4 // 256)
    with gpu(tmp_path, mode="virglrenderer") as g:
        gpa = render_target(g, 1, 1)
        ram = g.frontend.ram
        assert ram is not None
        ram.memory.write(gpa, data)
        g.ok(transfer_3d(TO_HOST_3D, 1, 1))
        ram.memory.write(gpa, bytes(len(data)))
        assert readback(g, 1, 1, gpa) == data
        # a box: 8x4 at (16, 8), read into offset 0 with an 8-pixel stride
        g.ok(transfer_3d(FROM_HOST_3D, 1, 1, box=(16, 8, 0, 8, 4, 1), stride=32))
        got = ram.memory.read(gpa, 8 * 4 * 4)
        want = b"".join(data[((8 + y) * W + 16) * 4 :][: 8 * 4] for y in range(4))
        assert got == want


def test_fences_and_ring_fences(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        render_target(g, 1, 1)
        for fence in (1, 2, 3):
            answer = g.cmd(
                submit(1, clear_stream(1, (0.0, 1.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=fence)
            )
            assert struct.unpack_from("<IIQI", answer) == (OK_NODATA, FLAG_FENCE, fence, 1)
        # a fenced 2D command goes through the renderer's fence too
        answer = g.cmd(hdr(0x104, FLAG_FENCE, 4) + struct.pack("<IIIII4x", 0, 0, W, H, 1))
        assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, 4)
        # CONTEXT_INIT: a virgl2 context, its ring 0 fences answered with the ring echoed
        g.ok(ctx_create(2, context_init=2))
        g.ok(ctx_res(CTX_ATTACH, 2, 1))
        stream = clear_stream(1, (0.0, 0.0, 1.0, 1.0))
        answer = g.cmd(submit(2, stream, flags=FLAG_FENCE | FLAG_RING, fence=5, ring=0))
        assert struct.unpack_from("<IIQIB", answer) == (OK_NODATA, FLAG_FENCE | FLAG_RING, 5, 2, 0)


def test_context_errors(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        assert g.status(ctx_create(0)) == ERR_CONTEXT  # id 0 is reserved
        g.ok(ctx_create(1))
        assert g.status(ctx_create(1)) == ERR_CONTEXT  # in use
        assert g.status(ctx_create(3, context_init=5)) == ERR_PARAMETER  # no cross-domain here
        assert g.status(hdr(CTX_DESTROY, ctx=9)) == ERR_CONTEXT
        assert g.status(ctx_res(CTX_ATTACH, 1, 42)) == ERR_RESOURCE
        g.ok(create_3d(2))
        assert g.status(ctx_res(CTX_ATTACH, 9, 2)) == ERR_CONTEXT
        assert g.status(ctx_res(CTX_DETACH, 1, 2)) == ERR_RESOURCE  # not attached
        g.ok(ctx_res(CTX_ATTACH, 1, 2))
        g.ok(ctx_res(CTX_DETACH, 1, 2))
        assert g.status(submit(9, b"\0" * 8)) == ERR_CONTEXT
        g.ok(hdr(CTX_DESTROY, ctx=1))
        assert g.status(submit(1, b"")) == ERR_CONTEXT
        assert g.status(hdr(CTX_CREATE, ctx=4)) == ERR_UNSPEC  # short


def test_resource_and_transfer_errors(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        assert g.status(create_3d(0)) == ERR_RESOURCE
        g.ok(create_3d(1))
        assert g.status(create_3d(1)) == ERR_RESOURCE
        assert g.status(create_3d(2, fmt=9999)) == ERR_PARAMETER  # virglrenderer refuses
        assert g.status(create_3d(2, target=77)) == ERR_PARAMETER
        assert g.status(create_3d(2, w=0)) == ERR_PARAMETER
        assert g.status(create_3d(2, w=16384, h=16384)) == ERR_OOM  # past the host limit
        assert g.status(transfer_3d(TO_HOST_3D, 1)) == ERR_UNSPEC  # no backing
        assert g.status(transfer_3d(FROM_HOST_3D, 42)) == ERR_RESOURCE
        gpa = g.guest_buffer(bytes(W * H * 4))
        g.ok(attach(1, [(gpa, W * H * 4)]))
        assert g.status(attach(1, [(gpa, W * H * 4)])) == ERR_UNSPEC  # already backed
        assert g.status(transfer_3d(TO_HOST_3D, 1, ctx=9)) == ERR_CONTEXT
        assert g.status(transfer_3d(TO_HOST_3D, 1, box=(60, 0, 0, 8, 8, 1))) == ERR_PARAMETER
        assert g.status(attach(3, [(gpa, 16)])) == ERR_RESOURCE
        assert g.status(attach(1 << 20, [(1 << 40, 16)])) == ERR_RESOURCE
        g.ok(create_3d(3))
        assert g.status(attach(3, [(1 << 40, 4096)])) == ERR_UNSPEC  # outside guest memory
        assert g.status(hdr(CREATE_3D) + b"\0" * 8) == ERR_UNSPEC  # short
        assert g.status(transfer_3d(TO_HOST_3D, 1)[:60]) == ERR_UNSPEC
        # blobs are not offered: every blob command is refused, none crashes
        assert g.status(create_blob(5, 4096, [(gpa, 4096)])) == ERR_UNSPEC
        assert g.status(scanout_blob(0, 1, W, H, BGRX, W * 4)) == ERR_UNSPEC
        assert g.status(hdr(MAP_BLOB) + struct.pack("<I4xQ", 1, 0)) == ERR_UNSPEC
        assert g.status(hdr(0x209) + struct.pack("<I4x", 1)) == ERR_UNSPEC
        # scanouts: unknown resource, a rectangle outside it
        assert g.status(set_scanout(0, 42, 0, 0, W, H)) == ERR_RESOURCE
        assert g.status(set_scanout(0, 1, 8, 0, W, H)) == ERR_PARAMETER
        assert g.status(flush(1, 0, 0, W + 1, H)) == ERR_PARAMETER
        g.ok(rid_cmd(UNREF, 1))
        assert g.status(rid_cmd(UNREF, 1)) == ERR_RESOURCE


def test_a_killed_context_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        gpa = render_target(g, 1, 1)
        g.ok(ctx_create(2))
        g.ok(ctx_res(CTX_ATTACH, 2, 1))
        assert g.status(submit(2, b"\0\0\0")) == ERR_PARAMETER  # not whole dwords
        assert g.status(submit(2, b"", size=1 << 16)) == ERR_UNSPEC  # stream cut short
        # an unknown command: virglrenderer refuses the stream, the context goes on
        assert g.status(submit(2, vcmd(250, 0, b"\xff" * 16))) == ERR_UNSPEC
        g.ok(submit(2, clear_stream(1, (1.0, 1.0, 1.0, 1.0))))
        # a framebuffer of a surface that does not exist: virglrenderer kills the
        # context (taking that stream), and every later stream of it is refused
        g.ok(submit(2, vcmd(5, 0, struct.pack("<III", 1, 0, 99))))
        for _ in range(2):
            assert g.status(submit(2, clear_stream(1, (1.0, 1.0, 1.0, 1.0)))) == ERR_UNSPEC
        # context 1 still renders
        # fences still signal (virgl_renderer_reset would have ended THREAD_SYNC)
        answer = g.cmd(submit(1, clear_stream(1, (0.0, 1.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=2))
        assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, 2)
        assert readback(g, 1, 1, gpa) == bytes([0, 255, 0, 255]) * (W * H)
        g.ok(hdr(CTX_DESTROY, ctx=2))


def test_the_next_connection_starts_virglrenderer_afresh(tmp_path: Path) -> None:
    for colour, want in (
        ((1.0, 0.0, 0.0, 1.0), (0, 0, 255, 255)),
        ((0.0, 0.0, 1.0, 1.0), (255, 0, 0, 255)),
    ):
        with gpu(tmp_path, mode="virglrenderer") as g:
            gpa = render_target(g, 1, 1)  # the same ids again: nothing is left over
            g.ok(submit(1, clear_stream(1, colour)))
            assert readback(g, 1, 1, gpa)[:4] == bytes(want)


def test_a_device_reset_drops_every_context_and_resource(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer") as g:
        render_target(g, 1, 1)
        g.ok(submit(1, clear_stream(1, (1.0, 0.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=1))
        g.frontend.reset_device()  # the session thread: virglrenderer is reset on the worker
        g.frontend.queues.clear()
        g.control, g.cursorq = g.frontend.start_device(2, 256, memory_size=64 << 20)
        assert g.status(submit(1, b"")) == ERR_CONTEXT
        assert g.status(transfer_3d(FROM_HOST_3D, 1)) == ERR_RESOURCE
        gpa = render_target(g, 1, 1)  # the same ids are free again
        # fences still signal (virgl_renderer_reset would have ended THREAD_SYNC)
        answer = g.cmd(submit(1, clear_stream(1, (0.0, 1.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=2))
        assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, 2)
        assert readback(g, 1, 1, gpa) == bytes([0, 255, 0, 255]) * (W * H)


class ExportingVirgl(VirglRenderer):
    """virglrenderer as it is with a render node, whose textures export as dma-bufs:
    there is none here (and the export crashes without one), so a memfd stands in for
    the dma-buf; everything else is virglrenderer's."""

    def export_scanout(self, source: ScanoutSource) -> Dmabuf | None:
        self.check_scanout(source, Rect(0, 0, source.width, source.height))
        fd = os.memfd_create("dmabuf", os.MFD_CLOEXEC)
        os.ftruncate(fd, W * H * 4)
        return Dmabuf(fd, W, H, W * 4, 0x34325258, 1)


def _exporting(config: GpuConfig) -> Renderer:
    return ExportingVirgl(config.virgl)


def test_an_exported_scanout_goes_to_qemu_as_a_dmabuf(tmp_path: Path) -> None:
    with gpu(tmp_path, mode="virglrenderer", renderer=_exporting) as g:
        assert g.display is not None
        render_target(g, 1, 1)
        g.ok(submit(1, clear_stream(1, (1.0, 0.0, 0.0, 1.0))))
        g.ok(set_scanout(0, 1, 0, 0, W, H))
        # DMABUF_SCANOUT with the fd (no SCANOUT, no pixels), then DMABUF_UPDATE
        assert g.display.dmabufs[0] == (0, 0, W, H, W, H, W * 4, 1, 0x34325258)
        assert len(g.display.fds) == 1 and os.fstat(g.display.fds[0]).st_size == W * H * 4
        assert g.display.dmabuf_updates == [(0, 0, 0, W, H)]
        g.ok(flush(1, 0, 8, W, 4))
        assert g.display.dmabuf_updates[-1] == (0, 0, 8, W, 4)
        assert 0 not in g.display.surfaces and g.display.updates == 0


def test_a_gpu_device_must_be_a_drm_node(tmp_path: Path) -> None:
    from vhost_device_gpu.renderer.virgl import VirglInitError, VirglOptions, probe

    with pytest.raises(VirglInitError, match="/dev/null: not a DRM render node"):
        probe(VirglOptions(gpu_device="/dev/null"))


def test_the_cursor_image_is_read_back_from_virglrenderer(tmp_path: Path) -> None:
    bgra = b"".join(bytes([x, y, 0x80, 0x40]) for y in range(64) for x in range(64))
    with gpu(tmp_path, mode="virglrenderer") as g:
        assert g.display is not None
        for rid, fmt, alpha in ((3, 1, 0x40), (4, BGRX, 0xFF)):  # BGRA keeps alpha, BGRX opaque
            g.ok(create_2d(rid, fmt, 64, 64))
            gpa = g.guest_buffer(bgra)
            g.ok(attach(rid, [(gpa, len(bgra))]))
            g.ok(transfer(rid, 0, 0, 64, 64, 0))
            g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 10, 20, rid, 1, 2), 0)
            d = g.display

            def shown(d: FakeQemuDisplay = d, alpha: int = alpha) -> bool:
                return (
                    d.cursor is not None
                    and d.cursor.image is not None
                    and d.cursor.image[3] == alpha
                )

            assert d.wait(shown)
            assert d.cursor is not None and d.cursor.image is not None
            image = d.cursor.image
            assert image[(5 * 64 + 7) * 4 : (5 * 64 + 7) * 4 + 4] == bytes([7, 5, 0x80, alpha])
        g.ok(create_2d(5, BGRX, 32, 32))
        g.submit(g.cursorq, cursor(UPDATE_CURSOR, 0, 0, 0, 5), 0)  # not 64x64: refused
        assert d.cursor.image[3] == 0xFF


def test_fences_without_thread_sync_are_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """virglrenderer drops THREAD_SYNC (no poll fd) with VIRGL_DISABLE_MT: pending fences
    are then polled on a timer, and still answered."""
    monkeypatch.setenv("VIRGL_DISABLE_MT", "1")
    with gpu(tmp_path, mode="virglrenderer") as g:
        gpa = render_target(g, 1, 1)
        for fence in (1, 2):
            answer = g.cmd(
                submit(1, clear_stream(1, (1.0, 0.0, 0.0, 1.0)), flags=FLAG_FENCE, fence=fence)
            )
            assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, fence)
        assert readback(g, 1, 1, gpa)[:4] == bytes([0, 0, 255, 255])


def test_backing_follows_a_new_memory_table(tmp_path: Path) -> None:
    """SET_MEM_TABLE again (QEMU does on a memory change): every resource's iovecs are
    attached again over the new mapping, and transfers reach the guest's pages."""
    with gpu(tmp_path, mode="virglrenderer") as g:
        gpa = render_target(g, 1, 1)
        ram = g.frontend.ram
        assert ram is not None
        g.frontend.set_mem_table([ram.region()], [ram.fd])
        g.ok(submit(1, clear_stream(1, (0.0, 0.0, 1.0, 1.0))))
        assert readback(g, 1, 1, gpa) == bytes([255, 0, 0, 255]) * (W * H)  # BGRX blue


def test_a_second_connection_at_once_is_refused_its_3d_work(tmp_path: Path) -> None:
    """virglrenderer is one per process: while one connection has it, another's 3D
    commands are answered ERR_UNSPEC (capset queries still are), the first goes on."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with gpu(tmp_path / "a", mode="virglrenderer") as first:
        gpa = render_target(first, 1, 1)
        with gpu(tmp_path / "b", mode="virglrenderer") as second:
            assert second.status(ctx_create(1)) == ERR_UNSPEC
            assert second.status(create_3d(1)) == ERR_UNSPEC
            answer = second.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", 0), 40)
            assert resp_type(answer) == OK_CAPSET_INFO
        first.ok(submit(1, clear_stream(1, (1.0, 0.0, 0.0, 1.0))))
        assert readback(first, 1, 1, gpa)[:4] == bytes([0, 0, 255, 255])
