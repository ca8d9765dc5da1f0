"""The cross-domain context against a scripted Wayland peer (what weston will not do on
demand: keymap fds, pipes both ways, a peer that hangs up mid-message), the hostile
cases, and the wire layout and id rules as units."""

from __future__ import annotations

import array
import os
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from crossdomain_rig import (
    ERR_CONTEXT,
    ERR_OOM,
    ERR_PARAMETER,
    ERR_RESOURCE,
    ERR_UNSPEC,
    ID_BLOB,
    ID_READ_PIPE,
    ID_WRITE_PIPE,
    MAPPABLE,
    OK_MAP_INFO,
    OK_NODATA,
    PAGE,
    R8,
    READ,
    RECEIVE,
    XRGB8888,
    Guest,
    Proxy,
    cd_header,
    cd_image_req,
    cd_init,
    cd_poll,
    cd_send,
    cd_write,
    cross_domain_gpu,
    hdr,
    resp_type,
    setup_proxy,
)
from gpu_rig import CAPSET, CAPSET_INFO, GET_DISPLAY_INFO, UNREF, flush, rid_cmd, scanout_blob

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.crossdomain import protocol as p
from vhost_device_gpu.crossdomain.items import (
    MAX_ITEMS,
    ItemTable,
    MemoryFd,
    ReadPipe,
    Requirements,
)
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.testing import FakeQemuDisplay
from vhost_user_core.protocol import ProtocolFeature
from vhost_user_core.testing.harness import connected_frontend

FEATURE_VIRGL, FEATURE_BLOB, FEATURE_CONTEXT_INIT = 1 << 0, 1 << 3, 1 << 4


class Peer:
    """A Wayland compositor stand-in: a listening socket whose connections the test
    scripts byte by byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.connections: queue.Queue[socket.socket] = queue.Queue()
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.connections.put(conn)

    def next(self) -> socket.socket:
        conn = self.connections.get(timeout=5)
        conn.settimeout(5)
        return conn

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])


def recv_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(28 * 4))
    fds: list[int] = []
    for _level, _kind, blob in ancdata:
        fds.extend(array.array("i", blob[: len(blob) - len(blob) % 4]))
    return data, fds


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    server = Peer(tmp_path / "wayland-peer")
    yield server
    server.close()


@pytest.fixture
def guest(tmp_path: Path, peer: Peer) -> Iterator[Guest]:
    with cross_domain_gpu(tmp_path, str(peer.path)) as g:
        yield g


@pytest.fixture
def proxy(guest: Guest, peer: Peer) -> Iterator[tuple[Proxy, socket.socket]]:
    ctx = setup_proxy(guest)
    conn = peer.next()
    yield ctx, conn
    conn.close()


def memfd(data: bytes) -> int:
    fd = os.memfd_create("peer", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


def daemon_alive(guest: Guest) -> None:
    assert resp_type(guest.cmd(hdr(GET_DISPLAY_INFO), 408)) == 0x1101


def context_failed(proxy: Proxy) -> None:
    assert proxy.guest.run(proxy.ctx, cd_poll()) == ERR_UNSPEC
    daemon_alive(proxy.guest)


# -- the device's offer --------------------------------------------------------------


def test_capset_5_and_its_features(guest: Guest) -> None:
    features = guest.frontend.features
    assert features & FEATURE_VIRGL and features & FEATURE_BLOB and features & FEATURE_CONTEXT_INIT
    assert guest.frontend.protocol_features & ProtocolFeature.SHMEM
    assert guest.frontend.get_shmem_config() == (0, 256 << 20)
    info = guest.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", 0))
    assert struct.unpack_from("<IIII", info, 20)[1:] == (5, 0, 16)
    assert resp_type(guest.cmd(hdr(CAPSET_INFO) + struct.pack("<I4x", 1))) == ERR_PARAMETER
    caps = guest.cmd(hdr(CAPSET) + struct.pack("<II", 5, 0))
    assert struct.unpack_from("<4I", caps, 24) == (1, 1 << 1, 0, 0)


def test_without_a_socket_nothing_is_offered(tmp_path: Path) -> None:
    config = GpuConfig("2d", headless=True)
    with connected_frontend(lambda: GpuBackend(config), tmp_path / "g.sock") as f:
        assert not f.get_features() & (FEATURE_VIRGL | FEATURE_CONTEXT_INIT)
        assert not f.get_protocol_features() & ProtocolFeature.SHMEM


# -- the scripted peer ---------------------------------------------------------------------


def test_poll_is_held_until_the_compositor_speaks(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, conn = proxy
    held = ctx.guest.submit(ctx.ctx, cd_poll(), ring=1)
    assert not ctx.guest.answered(held, timeout=0.3)
    daemon_alive(ctx.guest)  # the queue is not blocked meanwhile
    conn.sendall(b"\x01\x00\x00\x00\x08\x00\x00\x00")
    answer = ctx.guest.wait(held)
    assert resp_type(answer) == OK_NODATA
    assert struct.unpack_from("<IIQIB", answer)[1:] == (3, 1, 1, 1)  # fence, ctx, ring echoed


def test_send_reaches_the_peer_and_receive_comes_back(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, conn = proxy
    assert ctx.send(b"hello compositor") == OK_NODATA
    assert conn.recv(100) == b"hello compositor"
    conn.sendall(b"hello guest")
    got = ctx.poll()
    assert (got.cmd, got.data, got.idents) == (RECEIVE, b"hello guest", [])


def test_a_keymap_fd_becomes_a_read_only_blob(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, conn = proxy
    keymap = b'xkb_keymap { xkb_keycodes { include "evdev" }; };\0'
    fds = [memfd(keymap), memfd(b"second")]
    send_fds(conn, b"wl_keyboard.keymap", fds)
    for fd in fds:
        os.close(fd)
    got = ctx.poll()
    assert got.data == b"wl_keyboard.keymap"
    assert got.idents == [(3, ID_BLOB, len(keymap)), (5, ID_BLOB, 6)]  # odd ids
    guest = ctx.guest
    assert guest.host_blob(ctx.ctx, 10, 3, len(keymap), MAPPABLE) == OK_NODATA
    status, map_info = guest.map_blob(10, PAGE)
    assert status == OK_MAP_INFO and map_info == 0x11  # cached, read only
    assert bytes(guest.shmem.view(1, PAGE, len(keymap))) == keymap
    assert guest.shmem.maps[(1, PAGE)].writable is False
    # consumed: the same id cannot make a second blob
    assert guest.host_blob(ctx.ctx, 11, 3, len(keymap)) == ERR_PARAMETER


def test_a_write_pipe_from_the_compositor_takes_the_guests_writes(
    proxy: tuple[Proxy, socket.socket],
) -> None:
    ctx, conn = proxy
    read_end, write_end = os.pipe()
    send_fds(conn, b"wl_data_source.send", [write_end])
    os.close(write_end)
    got = ctx.poll()
    ((ident, kind, _),) = got.idents
    assert kind == ID_WRITE_PIPE and ident % 2
    assert ctx.guest.run(ctx.ctx, cd_write(ident, b"pasted text")) == OK_NODATA
    assert ctx.guest.run(ctx.ctx, cd_write(ident, b"", hang_up=True)) == OK_NODATA
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"pasted text"  # EOF: the device closed its end
    assert ctx.guest.run(ctx.ctx, cd_write(ident, b"late")) == ERR_UNSPEC  # gone: fails


def test_a_read_pipe_streams_the_compositors_data_as_reads(
    proxy: tuple[Proxy, socket.socket],
) -> None:
    ctx, conn = proxy
    assert ctx.send(b"wl_data_offer.receive", [(0x8000_0001, ID_READ_PIPE, 0)]) == OK_NODATA
    data, fds = recv_fds(conn)
    assert data == b"wl_data_offer.receive" and len(fds) == 1
    with os.fdopen(fds[0], "wb") as pipe:
        pipe.write(b"clipboard contents")
    got = ctx.poll()
    assert (got.cmd, got.identifier, got.data, got.hang_up) == (
        READ,
        0x8000_0001,
        b"clipboard contents",
        False,
    )
    got = ctx.poll()
    assert (got.cmd, got.identifier, got.data, got.hang_up) == (READ, 0x8000_0001, b"", True)
    # the next pipe is 0x8000_0002, as the guest guesses
    assert ctx.send(b"again", [(0x8000_0002, ID_READ_PIPE, 0)]) == OK_NODATA
    for fd in recv_fds(conn)[1]:
        os.close(fd)


def test_a_peer_that_hangs_up_mid_message_fails_only_its_context(
    guest: Guest, peer: Peer, proxy: tuple[Proxy, socket.socket]
) -> None:
    ctx, conn = proxy
    conn.sendall(b"\x01\x00\x00\x00\x20\x00")  # 6 bytes of a 32-byte message
    conn.close()
    got = ctx.poll()
    assert got.data == b"\x01\x00\x00\x00\x20\x00"  # bytes are relayed, not parsed
    answer = guest.wait(guest.submit(ctx.ctx, cd_poll(), ring=1))
    assert resp_type(answer) == ERR_UNSPEC  # the hang-up fails the context
    context_failed(ctx)
    # another context of the same device still reaches the compositor
    second = setup_proxy_on(guest, 2, 21, 22)
    fresh = peer.next()
    assert second.send(b"still here") == OK_NODATA
    assert fresh.recv(100) == b"still here"
    fresh.close()


def setup_proxy_on(guest: Guest, ctx: int, query: int, channel: int) -> Proxy:
    assert guest.ctx_create(ctx) == OK_NODATA
    _, query_gpa = guest.guest_blob(query)
    _, channel_gpa = guest.guest_blob(channel)
    assert guest.attach(ctx, query) == OK_NODATA and guest.attach(ctx, channel) == OK_NODATA
    assert guest.run(ctx, cd_init(query, channel)) == OK_NODATA
    return Proxy(guest, ctx, query_gpa, channel_gpa)


def test_destroying_a_context_answers_its_held_poll(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _conn = proxy
    held = ctx.guest.submit(ctx.ctx, cd_poll(), ring=1)
    assert not ctx.guest.answered(held, timeout=0.2)
    assert ctx.guest.status(hdr(0x201, ctx=ctx.ctx)) == OK_NODATA
    assert resp_type(ctx.guest.wait(held)) == ERR_UNSPEC


def test_only_the_configured_socket_is_opened(guest: Guest, peer: Peer) -> None:
    for ctx in (1, 2):
        setup_proxy_on(guest, ctx, 10 * ctx + 1, 10 * ctx + 2)
    connections = [peer.next(), peer.next()]  # one per INIT, waited for (accept lags)
    proxy = Proxy(guest, 3, 0, 0)
    assert guest.ctx_create(3) == OK_NODATA
    guest.guest_blob(31)
    assert guest.attach(3, 31) == OK_NODATA
    assert guest.run(3, cd_init(31, 31, channel_type=2)) == ERR_UNSPEC  # camera: not offered
    context_failed(proxy)
    time.sleep(0.2)  # a connection the device made would have been accepted by now
    assert peer.accepted == 2 and peer.connections.empty()
    for conn in connections:
        conn.close()


def test_unref_of_a_mapped_blob_unmaps_it(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    guest = ctx.guest
    _, size, blob_id = ctx.image_requirements(PAGE, 1, R8)
    assert guest.host_blob(ctx.ctx, 5, blob_id, size) == OK_NODATA
    assert guest.map_blob(5, 0)[0] == OK_MAP_INFO
    assert guest.status(rid_cmd(UNREF, 5)) == OK_NODATA
    assert guest.shmem.wait_requests(2)[-1][:1] == (10,)
    assert not guest.shmem.maps
    assert guest.map_blob(5, 0)[0] == ERR_UNSPEC  # no such blob: the renderer's refusal


def test_image_requirements_lay_out_one_plane(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    assert ctx.image_requirements(100, 10, XRGB8888) == (400, 4000, 2)
    assert ctx.image_requirements(7, 3, R8) == (7, 21, 4)  # even ids: 2, 4, ...


# -- hostile: each fails its context (or its command), never the daemon --------------------


@pytest.mark.parametrize(
    "commands",
    [
        cd_header(p.CMD_POLL, 0),  # cmd_size 0 would loop forever
        cd_header(p.CMD_POLL, 4),  # shorter than a header
        cd_header(p.CMD_POLL, 64),  # past the buffer
        cd_header(99, 8),  # unknown command
        cd_header(p.CMD_RECEIVE, 8),  # host-to-guest only
        cd_header(p.CMD_SEND, 100) + bytes(92),  # short SEND
        cd_send(b"x")[:8] + struct.pack("<II", 29, 0) + cd_send(b"x")[16:],  # 29 identifiers
        cd_header(p.CMD_SEND, 352) + struct.pack("<II", 0, 4000) + bytes(336),  # data past the end
        cd_header(p.CMD_WRITE, 24) + struct.pack("<IIII", 3, 0, 100, 0),  # data past the end
        cd_header(p.CMD_GET_IMAGE_REQUIREMENTS, 12) + bytes(4),  # short
        cd_poll() + b"\x03\x00",  # stray bytes after a command
    ],
    ids=[
        "size0", "size4", "size-past-end", "unknown", "receive", "short-send", "29-ids",
        "send-data-past-end", "write-data-past-end", "short-image-req", "stray-bytes",
    ],
)  # fmt: skip
def test_malformed_commands_fail_the_context(
    proxy: tuple[Proxy, socket.socket], commands: bytes
) -> None:
    ctx, _ = proxy
    assert ctx.guest.run(ctx.ctx, commands) == ERR_UNSPEC
    context_failed(ctx)


@pytest.mark.parametrize(
    "commands",
    [
        cd_send(b"x", [(1, ID_BLOB, 0)]),  # a guest blob has no host memory to send
        cd_send(b"x", [(77, ID_BLOB, 0)]),  # not attached
        cd_send(b"x", [(1, 2, 0)]),  # sync objects: not this version
        cd_send(b"x", [(0x8000_0005, ID_READ_PIPE, 0)]),  # a wrong guess
        cd_send(b"x", [(0x8000_0001, ID_READ_PIPE, 0), (0x8000_0002, ID_READ_PIPE, 0)]),
        cd_write(3, b"x"),  # no such pipe
        cd_init(1, 2),  # INIT twice
        cd_image_req(16, 16, 0x12345678),  # a format with no layout
        cd_image_req(0, 16, R8),
        cd_image_req(65536, 65536, XRGB8888),  # 16 GiB
    ],
    ids=[
        "guest-blob-fd", "unattached", "sync-type", "pipe-guess", "two-pipes", "write-unknown",
        "init-twice", "bad-format", "zero-width", "huge-image",
    ],
)  # fmt: skip
def test_bad_requests_fail_the_context(proxy: tuple[Proxy, socket.socket], commands: bytes) -> None:
    ctx, _ = proxy
    assert ctx.guest.run(ctx.ctx, commands) == ERR_UNSPEC
    context_failed(ctx)


def test_commands_before_init_fail(guest: Guest) -> None:
    ctx = setup_proxy(guest, init=False)
    assert guest.run(1, cd_send(b"early")) == ERR_UNSPEC
    context_failed(ctx)


@pytest.mark.parametrize(("query", "channel"), [(9, 2), (1, 9), (1, 1 << 31)])
def test_init_with_rings_that_are_not_attached_guest_blobs(
    guest: Guest, query: int, channel: int
) -> None:
    ctx = setup_proxy(guest, init=False)
    assert guest.run(1, cd_init(query, channel)) == ERR_UNSPEC
    context_failed(ctx)


def test_a_channel_ring_too_small_for_a_receive_fails_the_context(guest: Guest, peer: Peer) -> None:
    assert guest.ctx_create(1) == OK_NODATA
    guest.guest_blob(1)
    guest.guest_blob(2, size=64)  # a RECEIVE needs 352 bytes and more
    assert guest.attach(1, 1) == OK_NODATA and guest.attach(1, 2) == OK_NODATA
    assert guest.run(1, cd_init(1, 2)) == OK_NODATA
    conn = peer.next()
    conn.sendall(b"event")
    assert resp_type(guest.wait(guest.submit(1, cd_poll(), ring=1))) == ERR_UNSPEC
    context_failed(Proxy(guest, 1, 0, 0))
    conn.close()


def test_a_fence_on_a_ring_that_does_not_exist(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    assert resp_type(ctx.guest.wait(ctx.guest.submit(ctx.ctx, cd_poll(), ring=2))) == ERR_PARAMETER
    daemon_alive(ctx.guest)


def test_a_capset_context_needs_context_init(tmp_path: Path, peer: Peer) -> None:
    with cross_domain_gpu(tmp_path, str(peer.path), features=~FEATURE_CONTEXT_INIT) as guest:
        assert guest.ctx_create(1) == ERR_UNSPEC
        daemon_alive(guest)


def test_context_ids(guest: Guest) -> None:
    assert guest.ctx_create(0) == ERR_CONTEXT
    assert guest.ctx_create(1) == OK_NODATA
    assert guest.ctx_create(1) == ERR_CONTEXT
    assert guest.ctx_create(4, capset=2) == ERR_UNSPEC  # virgl: the 2D renderer has none
    assert guest.attach(1, 99) == ERR_RESOURCE


@pytest.mark.parametrize(
    ("rid", "blob_id", "size", "status"),
    [
        (9, 2, 4096, ERR_PARAMETER),  # not the required size
        (9, 6, 4096, ERR_PARAMETER),  # no such item
        (9, 3, 10, ERR_PARAMETER),  # no such fd
        (9, 1 << 40, 4096, ERR_PARAMETER),
        (1, 2, 1024, ERR_RESOURCE),  # id of the query ring
        (0, 2, 1024, ERR_RESOURCE),
    ],
)
def test_bad_host_blobs(
    proxy: tuple[Proxy, socket.socket], rid: int, blob_id: int, size: int, status: int
) -> None:
    ctx, _ = proxy
    ctx.image_requirements(1024, 1, R8)  # item 2, 1024 bytes
    assert ctx.guest.host_blob(ctx.ctx, rid, blob_id, size) == status
    daemon_alive(ctx.guest)
    assert ctx.guest.host_blob(ctx.ctx, 9, 2, 1024) == OK_NODATA  # the context goes on


def test_hostile_maps(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    guest = ctx.guest
    for rid in (5, 6):
        ctx.image_requirements(2 * PAGE, 1, R8)
        assert guest.host_blob(ctx.ctx, rid, 2 * (rid - 4), 2 * PAGE) == OK_NODATA
    ctx.image_requirements(PAGE, 1, R8)
    assert guest.host_blob(ctx.ctx, 7, 6, PAGE, flags=0) == OK_NODATA  # not mappable
    assert guest.map_blob(7, 0)[0] == ERR_PARAMETER
    assert guest.map_blob(5, 100)[0] == ERR_PARAMETER  # not page-aligned
    assert guest.map_blob(5, (256 << 20) - PAGE)[0] == ERR_PARAMETER  # runs off the region
    assert guest.map_blob(5, 1 << 62)[0] == ERR_PARAMETER
    assert guest.map_blob(5, 4 * PAGE)[0] == OK_MAP_INFO
    assert guest.map_blob(5, 8 * PAGE)[0] == ERR_PARAMETER  # mapped already
    assert guest.map_blob(6, 5 * PAGE)[0] == ERR_PARAMETER  # overlaps blob 5
    assert guest.map_blob(6, 6 * PAGE)[0] == OK_MAP_INFO
    assert guest.unmap_blob(7) == ERR_PARAMETER  # never mapped
    assert guest.map_blob(1, 0)[0] == ERR_UNSPEC  # a guest blob: the renderer's (none in 2D)
    assert [r[2] for r in guest.shmem.requests] == [True, True]  # nothing bad reached the VMM
    daemon_alive(guest)


# -- units: the wire layout and the id rules -------------------------------------------------


def test_struct_sizes() -> None:
    assert p.HEADER.size == 8
    assert p.SEND_RECEIVE_SIZE == 352 and p.READ_WRITE_SIZE == 24
    assert p.IMAGE_REQUIREMENTS.size == 64 and p.CAPABILITIES.size == 16
    assert p.MAX_RECEIVE_DATA == 3744


def test_concatenated_commands_parse_by_their_sizes() -> None:
    buffer = cd_init(1, 2) + cd_poll() + cd_send(b"abc", [(3, 1, 9)]) + cd_write(5, b"xy", True)
    init, poll, send, write = p.parse_commands(buffer)
    assert init == p.Init(1, 2, 1) and poll == p.Poll()
    assert send == p.Send((p.Identifier(3, 1, 9),), b"abc")
    assert write == p.Write(5, True, b"xy")
    # a size bigger than the struct skips the rest (commands are parsed by prefix)
    padded = cd_header(p.CMD_POLL, 16) + bytes(8) + cd_poll()
    assert p.parse_commands(padded) == [p.Poll(), p.Poll()]


def test_legacy_init_uses_one_ring_for_both() -> None:
    legacy = cd_header(p.CMD_INIT, 16) + struct.pack("<II", 7, 1)
    assert p.parse_commands(legacy) == [p.Init(7, 7, 1)]


def test_encoded_replies() -> None:
    receive = p.encode_receive([p.Identifier(3, 1, 100)], b"data")
    assert len(receive) == 356 and receive[0] == p.CMD_RECEIVE
    assert struct.unpack_from("<IIIII", receive, 8)[:3] == (1, 4, 3)
    read = p.encode_read(0x8000_0001, b"xyz", False)
    assert struct.unpack_from("<BBHIIIII", read) == (6, 0, 0, 0, 0x8000_0001, 0, 3, 0)
    assert p.capabilities(2) == struct.pack("<4I", 1, 2, 0, 0)


def test_ids_even_odd_and_read_pipes() -> None:
    table = ItemTable()
    assert [table.add(Requirements(1, 1, R8, 1, 1)) for _ in range(3)] == [2, 4, 6]
    assert table.add(MemoryFd(os.memfd_create("a"), 1)) == 3
    assert table.add(MemoryFd(os.memfd_create("b"), 1)) == 5
    assert table.next_read_pipe() == 0x8000_0001
    r, w = os.pipe()
    os.close(w)
    assert table.add(ReadPipe(r)) == 0x8000_0001
    assert table.next_read_pipe() == 0x8000_0002
    table.close()
    assert not table.items


def test_the_item_table_is_bounded() -> None:
    table = ItemTable()
    for _ in range(MAX_ITEMS):
        table.add(Requirements(1, 1, R8, 1, 1))
    with pytest.raises(p.CrossDomainProtocolError):
        table.add(Requirements(1, 1, R8, 1, 1))


# -- host blobs on a scanout, idleness, reset -------------------------------------------------


def test_a_host_blob_is_scanned_out(tmp_path: Path, peer: Peer) -> None:
    """SET_SCANOUT_BLOB and RESOURCE_FLUSH read a host blob's pixels from its memfd,
    written by the guest through the SHMEM mapping."""
    display = FakeQemuDisplay()
    try:
        with cross_domain_gpu(tmp_path, str(peer.path), display) as guest:
            ctx = setup_proxy(guest)
            stride, size, blob_id = ctx.image_requirements(4, 2, XRGB8888)
            assert (stride, size) == (16, 32)
            assert guest.host_blob(1, 5, blob_id, size) == OK_NODATA
            assert guest.map_blob(5, 0)[0] == OK_MAP_INFO
            words = [0x00112233, 0x00445566, 0x00778899, 0x00AABBCC] * 2
            guest.shmem.view(1, 0, size)[:] = struct.pack("<8I", *words)
            # B8G8R8X8 (2) is x8r8g8b8 words in memory: shown as they are
            assert guest.status(scanout_blob(0, 5, 4, 2, 2, 16)) == OK_NODATA
            assert display.wait(lambda: 0 in display.surfaces and display.surfaces[0].updates)
            surface = display.surfaces[0]
            assert [surface.pixel(x, y) for y in range(2) for x in range(4)] == words
            assert guest.status(scanout_blob(0, 5, 4, 3, 2, 16)) == ERR_PARAMETER  # past it
            assert guest.status(flush(5, 0, 0, 4, 2)) == OK_NODATA
    finally:
        display.close()


def test_a_held_poll_costs_no_cpu(proxy: tuple[Proxy, socket.socket]) -> None:
    """While a POLL waits for the compositor, the daemon (this process) sleeps."""
    ctx, conn = proxy
    held = ctx.guest.submit(ctx.ctx, cd_poll(), ring=1)
    assert not ctx.guest.answered(held, timeout=0.1)
    before = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - before < 0.1
    conn.sendall(b"wake")
    assert resp_type(ctx.guest.wait(held)) == OK_NODATA


def test_reset_drops_maps_and_held_polls(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    guest = ctx.guest
    _, size, blob_id = ctx.image_requirements(PAGE, 1, R8)
    assert guest.host_blob(1, 5, blob_id, size) == OK_NODATA
    assert guest.map_blob(5, 0)[0] == OK_MAP_INFO
    guest.submit(1, cd_poll(), ring=1)
    guest.frontend.reset_device()
    assert not guest.shmem.maps


# -- bounds: what one guest may make the daemon hold ------------------------------------------


def test_at_most_8_contexts(guest: Guest) -> None:
    for ctx in range(1, 9):
        assert guest.ctx_create(ctx) == OK_NODATA
    assert guest.ctx_create(9) == ERR_OOM
    assert guest.status(hdr(0x201, ctx=1)) == OK_NODATA
    assert guest.ctx_create(9) == OK_NODATA  # a destroyed one makes room


def test_a_compositor_flooding_fds_fails_the_context(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, conn = proxy
    before = _peer_memfds()
    first = [memfd(b"k") for _ in range(20)]
    send_fds(conn, b"a", first)
    assert len(ctx.poll().idents) == 20
    second = [memfd(b"k") for _ in range(20)]
    send_fds(conn, b"b", second)  # 40 held: more than 32
    for fd in first + second:
        os.close(fd)
    answer = ctx.guest.wait(ctx.guest.submit(ctx.ctx, cd_poll(), ring=1))
    assert resp_type(answer) == ERR_UNSPEC
    context_failed(ctx)
    assert _peer_memfds() <= before  # none of the 40 stays open in the daemon


def _peer_memfds() -> set[int]:
    """The peer's memfds open in this process (the daemon's and the test's)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("/memfd:peer"):
                found.add(int(name))
        except OSError:
            pass
    return found


def test_at_most_512_host_blobs(proxy: tuple[Proxy, socket.socket]) -> None:
    ctx, _ = proxy
    _, size, blob_id = ctx.image_requirements(PAGE, 1, R8)
    for rid in range(100, 612):
        assert ctx.guest.host_blob(ctx.ctx, rid, blob_id, size) == OK_NODATA
    assert ctx.guest.host_blob(ctx.ctx, 612, blob_id, size) == ERR_OOM
    assert ctx.guest.status(rid_cmd(UNREF, 100)) == OK_NODATA
    assert ctx.guest.host_blob(ctx.ctx, 612, blob_id, size) == OK_NODATA
