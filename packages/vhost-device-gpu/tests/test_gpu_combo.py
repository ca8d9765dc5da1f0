"""One daemon with both context kinds (`-g virglrenderer --wayland-socket`): capsets
of both, CONTEXT_INIT routing a virgl context to virglrenderer and a cross-domain one
to the real headless weston, each with its own fences, and resources one side made
named by the other (answered, or refused with a status). virglrenderer renders for
real (llvmpipe, surfaceless EGL)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crossdomain_rig import (
    BLOB_GUEST,
    ERR_CONTEXT,
    ERR_PARAMETER,
    ERR_RESOURCE,
    ERR_UNSPEC,
    MAPPABLE,
    OK_MAP_INFO,
    OK_NODATA,
    PAGE,
    R8,
    RECEIVE,
    Guest,
    WlDecoder,
    cd_poll,
    cross_domain_gpu,
    headless_weston,
    parse_ring,
    setup_proxy,
    wl_msg,
)
from gpu_rig import (
    ATTACH,
    BGRX,
    CAPSET,
    CAPSET_INFO,
    CREATE_BLOB,
    OK_CAPSET,
    UNREF,
    hdr,
    resp_type,
    rid_cmd,
    scanout_blob,
)
from virgl_rig import (
    CREATE_3D,
    CTX_ATTACH,
    CTX_DETACH,
    FEATURE_BLOB,
    FEATURE_CONTEXT_INIT,
    FEATURE_VIRGL,
    FLAG_FENCE,
    FROM_HOST_3D,
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
)

REGISTRY, SYNC = 2, 3
#: A virgl context's id, its render target; the cross-domain context is 1 (rings 1, 2).
VIRGL_CTX, TARGET = 7, 10
RED = (1.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def weston(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with headless_weston(tmp_path_factory.mktemp("weston")) as path:
        yield path


def both(tmp_path: Path, weston: Path):  # type: ignore[no-untyped-def]
    return cross_domain_gpu(tmp_path, str(weston), mode="virglrenderer")


def virgl_target(guest: Guest) -> int:
    """A virgl context with a 64x64 BGRX render target attached, backed by guest memory."""
    assert guest.status(ctx_create(VIRGL_CTX)) == OK_NODATA
    assert guest.status(create_3d(TARGET)) == OK_NODATA
    gpa = guest.ram.alloc(W * H * 4, align=PAGE)
    entry = struct.pack("<QI4x", gpa, W * H * 4)
    assert guest.status(hdr(ATTACH) + struct.pack("<II", TARGET, 1) + entry) == OK_NODATA
    assert guest.status(ctx_res(CTX_ATTACH, VIRGL_CTX, TARGET)) == OK_NODATA
    return gpa


def test_one_daemon_offers_virgl_and_cross_domain(tmp_path: Path, weston: Path) -> None:
    with both(tmp_path, weston) as guest:
        offered = guest.frontend.get_features()
        assert offered & FEATURE_VIRGL and offered & FEATURE_CONTEXT_INIT
        assert offered & FEATURE_BLOB
        assert struct.unpack_from("<I", guest.frontend.get_config(12, 4))[0] == 3
        ids = []
        for index in range(3):
            answer = guest.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", index))
            assert resp_type(answer) == OK_CAPSET_INFO
            ids.append(struct.unpack_from("<I", answer, 24)[0])
        assert ids == [1, 2, 5]  # VIRGL, VIRGL2, CROSS_DOMAIN
        assert guest.status(hdr(CAPSET_INFO) + struct.pack("<I4x", 3)) == ERR_PARAMETER
        for capset, version in ((2, 2), (5, 0)):
            answer = guest.cmd(hdr(CAPSET) + struct.pack("<II", capset, version), 4096)
            assert resp_type(answer) == OK_CAPSET


def test_a_virgl_fence_signals_while_weston_answers_a_cross_domain_poll(
    tmp_path: Path, weston: Path
) -> None:
    """Rings 1 and 2 of the cross-domain context are guest blobs virglrenderer holds
    too; its POLL waits on weston while the virgl context's fenced clear is answered
    by virglrenderer's fence."""
    with both(tmp_path, weston) as guest:
        proxy = setup_proxy(guest)  # INIT: connected to weston
        gpa = virgl_target(guest)
        assert proxy.send(wl_msg(1, 1, REGISTRY) + wl_msg(1, 0, SYNC)) == OK_NODATA
        held = guest.submit(proxy.ctx, cd_poll(), ring=1)
        fenced = guest.post(submit(VIRGL_CTX, clear_stream(TARGET, RED), flags=FLAG_FENCE, fence=9))
        answer = guest.wait(fenced)
        assert struct.unpack_from("<IIQI", answer) == (OK_NODATA, FLAG_FENCE, 9, VIRGL_CTX)
        assert guest.status(transfer_3d(FROM_HOST_3D, TARGET, VIRGL_CTX)) == OK_NODATA
        assert guest.ram.memory.read(gpa, 4) == bytes([0, 0, 255, 255])  # BGRX red

        decoder, interfaces, synced = WlDecoder(), set(), False
        answer = guest.wait(held)
        while True:
            assert resp_type(answer) == OK_NODATA
            ring = proxy_ring(guest, proxy.channel_gpa)
            assert ring[0] == RECEIVE
            for event in decoder.feed(ring[1]):
                if (event.obj, event.opcode) == (REGISTRY, 0):
                    interfaces.add(event.string(4)[0])
                synced |= (event.obj, event.opcode) == (SYNC, 0)
            if synced:
                break
            answer = guest.wait(guest.submit(proxy.ctx, cd_poll(), ring=1))
        assert {"wl_compositor", "wl_shm"} <= interfaces


def proxy_ring(guest: Guest, channel_gpa: int) -> tuple[int, bytes]:
    got = parse_ring(guest.ram.memory.read(channel_gpa, PAGE))
    return got.cmd, got.data


def test_resources_across_the_two_kinds(tmp_path: Path, weston: Path) -> None:
    with both(tmp_path, weston) as guest:
        proxy = setup_proxy(guest)
        virgl_target(guest)
        # a guest blob (virglrenderer's) is attached to both kinds of context
        gpa = guest.ram.alloc(PAGE, align=PAGE)
        entry = struct.pack("<QI4x", gpa, PAGE)
        blob = hdr(CREATE_BLOB) + struct.pack("<IIIIQQ", 20, BLOB_GUEST, MAPPABLE, 1, 0, PAGE)
        assert guest.status(blob + entry) == OK_NODATA
        assert guest.attach(proxy.ctx, 20) == OK_NODATA
        assert guest.status(ctx_res(CTX_ATTACH, VIRGL_CTX, 20)) == OK_NODATA
        assert guest.status(ctx_res(CTX_DETACH, VIRGL_CTX, 20)) == OK_NODATA
        # ... but it has no texture: transfers and scanouts of it are refused
        assert guest.status(transfer_3d(TO_HOST_3D, 20, VIRGL_CTX)) == ERR_PARAMETER
        assert guest.status(scanout_blob(0, 20, 16, 16, BGRX, 64)) == ERR_PARAMETER
        # a blob too short for its entries, the id of a virgl resource: refused
        short = hdr(CREATE_BLOB) + struct.pack("<IIIIQQ", 21, BLOB_GUEST, 0, 1, 0, 2 * PAGE)
        assert guest.status(short + entry) == ERR_PARAMETER
        taken = hdr(CREATE_BLOB) + struct.pack("<IIIIQQ", TARGET, BLOB_GUEST, 0, 1, 0, PAGE)
        assert guest.status(taken + entry) == ERR_RESOURCE

        # a host blob (the cross-domain side's memfd): virgl contexts cannot name it
        stride, size, blob_id = proxy.image_requirements(PAGE, 1, R8)
        assert guest.host_blob(proxy.ctx, 30, blob_id, size) == OK_NODATA
        assert guest.status(ctx_res(CTX_ATTACH, VIRGL_CTX, 30)) == ERR_RESOURCE
        assert guest.status(create_3d(30)) == ERR_RESOURCE
        assert guest.status(transfer_3d(TO_HOST_3D, 30, VIRGL_CTX)) == ERR_RESOURCE
        assert guest.map_blob(30, 0)[0] == OK_MAP_INFO
        # nor the other way: a virgl texture is no blob for a cross-domain context,
        # a virgl context's host blob is not served, and its id is not free
        assert guest.attach(proxy.ctx, TARGET) == ERR_RESOURCE
        assert guest.host_blob(VIRGL_CTX, 31, blob_id, size) == ERR_PARAMETER
        assert guest.host_blob(proxy.ctx, TARGET, blob_id, size) == ERR_RESOURCE

        # context ids are one space: neither kind takes the other's
        assert guest.ctx_create(VIRGL_CTX) == ERR_CONTEXT  # capset 5 on a virgl id
        assert guest.status(ctx_create(proxy.ctx, 2)) == ERR_CONTEXT  # virgl2 on cd's

        # the resources go, each on its own side; both contexts go on working
        for rid in (20, 30):
            assert guest.status(rid_cmd(UNREF, rid)) == OK_NODATA
        assert guest.attach(proxy.ctx, 20) == ERR_RESOURCE
        answer = guest.cmd(submit(VIRGL_CTX, clear_stream(TARGET, RED), flags=FLAG_FENCE, fence=3))
        assert struct.unpack_from("<IIQ", answer) == (OK_NODATA, FLAG_FENCE, 3)
        assert proxy.image_requirements(PAGE, 1, R8)[0] == stride
        assert guest.status(rid_cmd(UNREF, TARGET)) == OK_NODATA
        assert guest.status(hdr(CREATE_3D) + b"\0" * 8) == ERR_UNSPEC  # short, answered
