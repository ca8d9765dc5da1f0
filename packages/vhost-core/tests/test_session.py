"""The request handler through a real socket: our Frontend against an in-process daemon."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from echo_backend import EchoBackend

from vhost_user_core.errors import ProtocolError
from vhost_user_core.frontend import Frontend, FrontendQueue, GuestRam
from vhost_user_core.protocol import (
    HEADER,
    REQUEST_SPECS,
    STATUS_NEEDS_RESET,
    U64,
    VHOST_USER_F_PROTOCOL_FEATURES,
    HeaderFlag,
    ProtocolFeature,
    ReplyKind,
    Request,
    VringState,
)
from vhost_user_core.virtqueue import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
)


def echo_round_trip(frontend: Frontend, queue: FrontendQueue, data: bytes) -> bytes:
    assert frontend.ram is not None
    src = frontend.ram.alloc(len(data))
    dst = frontend.ram.alloc(len(data))
    frontend.ram.memory.write(src, data)
    head = queue.driver.add([(src, len(data), False), (dst, len(data), True)])
    queue.publish()
    ((used_head, length),) = queue.wait_used(1)
    assert used_head == head
    return frontend.ram.memory.read(dst, length)


def test_echo_round_trip(echo: Frontend) -> None:
    queues = echo.start_device(2, 64)
    assert echo_round_trip(echo, queues[0], b"hello vhost") == b"hello vhost"
    assert echo_round_trip(echo, queues[1], b"second queue") == b"second queue"


def test_a_kick_fd_that_cannot_be_polled_is_refused_and_the_next_start_works(
    echo: Frontend,
) -> None:
    """/dev/null as the kick fd (found by the session fuzz target), or a memfd: epoll
    would refuse it (EPERM) when the ring starts, and every later SET_VRING_ADDR failed."""
    echo.negotiate()
    for fd in (os.memfd_create("not-a-kick"), os.open(os.devnull, os.O_RDONLY)):
        try:
            with pytest.raises(ProtocolError, match="rejected"):
                echo.request(Request.SET_VRING_KICK, U64(0).encode(), [fd], need_reply=True)
        finally:
            os.close(fd)
    queues = echo.start_device(2, 64)
    assert echo_round_trip(echo, queues[0], b"still served") == b"still served"


def test_protocol_features_offered(echo: Frontend) -> None:
    assert echo.get_features() & VHOST_USER_F_PROTOCOL_FEATURES
    offered = echo.get_protocol_features()
    for feature in (
        ProtocolFeature.MQ,
        ProtocolFeature.REPLY_ACK,
        ProtocolFeature.CONFIG,
        ProtocolFeature.CONFIGURE_MEM_SLOTS,
        ProtocolFeature.RESET_DEVICE,
        ProtocolFeature.STATUS,
        ProtocolFeature.BACKEND_REQ,
    ):
        assert feature in offered
    assert ProtocolFeature.INFLIGHT_SHMFD not in offered


def test_queue_num_and_mem_slots(echo: Frontend) -> None:
    info = echo.negotiate()
    assert info.queue_num == 2
    assert echo.get_max_mem_slots() == 509


def test_every_request_is_answered_without_hanging(echo: Frontend) -> None:
    """Each of the 44 requests, with an empty payload: a reply or an ack comes back, and
    the connection stays usable (nothing hangs, nothing crashes)."""
    echo.negotiate()
    for request in Request:
        if request in (Request.RESET_OWNER, Request.RESET_DEVICE):
            continue  # valid with an empty payload; tested separately
        spec = REQUEST_SPECS[request]
        always = spec.reply is ReplyKind.ALWAYS
        try:
            echo.request(request, b"", need_reply=not always, reply=always, timeout=2.0)
        except ProtocolError as exc:
            assert "no reply" not in str(exc), request.name
        assert echo.get_features()  # still alive


def test_unknown_request_gets_failed_ack(echo: Frontend) -> None:
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.request(99, b"\x00" * 8, need_reply=True)
    assert echo.get_queue_num() == 2


def test_ungated_request_needs_its_protocol_feature(echo: Frontend) -> None:
    echo.negotiate(want_protocol=ProtocolFeature.MQ | ProtocolFeature.REPLY_ACK)
    # CONFIG was not negotiated: GET_CONFIG gets an empty (failure) reply, not a hang.
    with pytest.raises(ProtocolError, match="refused GET_CONFIG"):
        echo.get_config(0, 4)


def test_wrong_fd_count(echo: Frontend) -> None:
    echo.negotiate()
    # The word says "fd attached" but none comes.
    with pytest.raises(ProtocolError, match="rejected"):
        echo.request(Request.SET_VRING_KICK, U64(0).encode(), need_reply=True)
    # An fd where none belongs is closed and the request fails.
    r, w = os.pipe()
    try:
        with pytest.raises(ProtocolError, match="rejected"):
            echo.request(Request.SET_OWNER, b"", [r], need_reply=True)
    finally:
        os.close(r)
        os.close(w)
    assert echo.get_queue_num() == 2


def test_mem_table_with_fewer_fds_than_regions(echo: Frontend) -> None:
    echo.negotiate()
    ram = GuestRam(1 << 20)
    try:
        region2 = type(ram.region())(1 << 30, 4096, 1 << 40, 0)
        with pytest.raises(ProtocolError, match="rejected"):
            echo.set_mem_table([ram.region(), region2], [ram.fd])
    finally:
        ram.close()


def test_truncated_message_ends_session_and_daemon_relistens(echo_socket: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(echo_socket))
    sock.sendall(HEADER.pack(Request.SET_FEATURES, HeaderFlag.VERSION, 8) + b"\x00\x00")
    sock.close()
    with Frontend.connect(echo_socket) as again:
        assert again.get_features() & VHOST_USER_F_PROTOCOL_FEATURES


def test_garbage_header_ends_session_only(echo_socket: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(echo_socket))
    sock.sendall(HEADER.pack(1, 0x77, 0xFFFFFFFF))
    assert sock.recv(1) == b""  # the daemon hung up on us
    sock.close()
    with Frontend.connect(echo_socket) as again:
        assert again.get_features()


def test_get_vring_base_stops_the_ring(echo: Frontend) -> None:
    queues = echo.start_device(2, 64)
    assert echo_round_trip(echo, queues[0], b"x") == b"x"
    assert echo.get_vring_base(0) == 1
    # The round trip saw its used entry, maybe before the interrupt that came with it:
    # consume that one (the stopped ring can send no other) before expecting silence.
    queues[0].wait_call(0)
    assert echo.ram is not None
    buf = echo.ram.alloc(8)
    queues[0].driver.add([(buf, 8, True)])
    queues[0].publish()
    queues[0].kick()
    assert not queues[0].wait_call(0.3)
    assert queues[0].driver.get_used() == []


def test_rings_start_enabled_without_protocol_features(echo: Frontend) -> None:
    queues = echo.start_device(1, 64, features=~VHOST_USER_F_PROTOCOL_FEATURES)
    assert echo_round_trip(echo, queues[0], b"no protocol features") == b"no protocol features"


def test_disabled_ring_is_not_processed_until_enabled(echo: Frontend) -> None:
    queues = echo.start_device(1, 64)
    queue = queues[0]
    echo.set_vring_enable(0, False)
    assert echo.ram is not None
    src, dst = echo.ram.alloc(4), echo.ram.alloc(4)
    echo.ram.memory.write(src, b"wait")
    queue.driver.add([(src, 4, False), (dst, 4, True)])
    queue.publish()
    queue.kick()
    assert not queue.wait_call(0.3)
    # Enabling the ring processes what the driver posted meanwhile.
    echo.set_vring_enable(0, True)
    assert queue.wait_used(1) and echo.ram.memory.read(dst, 4) == b"wait"


def test_fresh_backend_per_connection(echo_socket: Path) -> None:
    with Frontend.connect(echo_socket) as first:
        first.negotiate()
        first.set_config(0, b"CHANGED!")
        assert first.get_config(0, 8) == b"CHANGED!"
    with Frontend.connect(echo_socket) as second:
        second.negotiate()
        assert second.get_config(0, 8) == b"ECHOCFG\0"
    assert len(EchoBackend.instances) == 2
    assert EchoBackend.instances[0].closed.wait(2)


def test_config_bounds(echo: Frontend) -> None:
    echo.negotiate()
    assert echo.get_config(2, 4) == b"HOCF"
    with pytest.raises(ProtocolError):
        echo.get_config(6, 8)
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_config(7, b"toolong")


def test_add_and_remove_memory_regions(echo: Frontend) -> None:
    queues = echo.start_device(1, 64, use_mem_slots=True)
    assert echo_round_trip(echo, queues[0], b"mem slots") == b"mem slots"
    assert echo.ram is not None
    echo.rem_mem_reg(echo.ram.region())
    with pytest.raises(ProtocolError, match="rejected"):
        echo.rem_mem_reg(echo.ram.region())  # already gone
    echo.add_mem_reg(echo.ram.region(), echo.ram.fd)
    assert echo_round_trip(echo, queues[0], b"back again") == b"back again"


def test_reset_device(echo: Frontend) -> None:
    queues = echo.start_device(1, 64)
    echo.reset_device()
    echo.sync()
    assert EchoBackend.instances[-1].resets == 1
    assert echo.ram is not None
    buf = echo.ram.alloc(8)
    queues[0].driver.add([(buf, 8, True)])
    queues[0].publish()
    queues[0].kick()
    assert not queues[0].wait_call(0.3)


def test_status(echo: Frontend) -> None:
    echo.negotiate()
    echo.set_status(0x0F)
    assert echo.get_status() == 0x0F
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_status(0x1FF)


def test_set_features_rejects_bits_never_offered(echo: Frontend) -> None:
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_features(1 << 63)


@pytest.mark.parametrize("num", [0, 3, 512])
def test_set_vring_num_rejects_bad_sizes(echo: Frontend, num: int) -> None:
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_vring_num(0, num)


@pytest.mark.parametrize("num", [0x8000_0000, 0xFFFF_F900, 0xFFFF_FFFF])
def test_set_vring_num_beyond_a_c_int_is_refused_and_the_session_goes_on(
    echo: Frontend, num: int
) -> None:
    """Found by fuzz/targets/session.py: a u32 size that does not fit a C int made
    Virtqueue.set_size raise OverflowError, which is no VhostUserError, so it killed the
    connection's serving thread instead of failing the request."""
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_vring_num(0, num)
    assert echo.get_features() & VHOST_USER_F_PROTOCOL_FEATURES


def test_queue_index_out_of_range(echo: Frontend) -> None:
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_vring_num(7, 64)
    reply = echo.request(Request.GET_VRING_BASE, VringState(9, 0).encode(), reply=True)
    assert reply == VringState(9, 0).encode()


def test_vring_addr_outside_memory(echo: Frontend) -> None:
    echo.start_device(1, 64)
    with pytest.raises(ProtocolError, match="rejected"):
        echo.set_vring_addr(0, 1 << 40, 1 << 40, 1 << 40)


def test_backend_request_channel(echo: Frontend) -> None:
    echo.negotiate()
    ours, theirs = socket.socketpair()
    try:
        echo.set_backend_req_fd(theirs.fileno())
    finally:
        theirs.close()
        ours.close()


def test_avail_index_jump_marks_needs_reset(echo: Frontend) -> None:
    queues = echo.start_device(1, 64)
    queues[0].driver.set_avail_idx(1000)
    queues[0].kick()
    deadline = time.monotonic() + 2
    while not echo.get_status() & STATUS_NEEDS_RESET:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert echo.get_queue_num() == 2  # the daemon is fine


def test_short_payload_for_known_request(echo: Frontend) -> None:
    echo.negotiate()
    with pytest.raises(ProtocolError, match="rejected"):
        echo.request(Request.SET_VRING_BASE, struct.pack("<I", 0), need_reply=True)


def _loop(queue: FrontendQueue, ram: GuestRam) -> int:
    head = queue.driver.add([(ram.alloc(8), 8, True), (ram.alloc(8), 8, True)])
    second = (head + 1) % queue.size
    queue.driver.write_raw_descriptor(second, ram.alloc(8), 8, VIRTQ_DESC_F_NEXT, head)
    return head


def _nested_indirect(queue: FrontendQueue, ram: GuestRam) -> int:
    inner = ram.alloc(16, 16)
    ram.memory.write(inner, struct.pack("<QIHH", ram.alloc(8), 8, VIRTQ_DESC_F_WRITE, 0))
    outer = ram.alloc(16, 16)
    head = queue.driver.add_indirect(outer, [(0, 0, False)])
    ram.memory.write(outer, struct.pack("<QIHH", inner, 16, VIRTQ_DESC_F_INDIRECT, 0))
    return head


def _bad_indirect_size(queue: FrontendQueue, ram: GuestRam) -> int:
    head = queue.driver.add_indirect(ram.alloc(32, 16), [(ram.alloc(8), 8, True)])
    queue.driver.write_raw_descriptor(head, ram.alloc(32, 16), 24, VIRTQ_DESC_F_INDIRECT, 0)
    return head


HOSTILE_CHAINS = {
    "outside-memory": lambda q, ram: q.driver.add([(1 << 40, 64, True)]),
    "straddles-end-of-memory": lambda q, ram: q.driver.add([(ram.size - 8, 64, True)]),
    "length-wraps": lambda q, ram: q.driver.add([((1 << 64) - 16, 64, True)]),
    "descriptor-loop": _loop,
    "nested-indirect": _nested_indirect,
    "indirect-bad-size": _bad_indirect_size,
}


@pytest.mark.parametrize("make_chain", HOSTILE_CHAINS.values(), ids=HOSTILE_CHAINS.keys())
def test_daemon_answers_a_hostile_chain_and_keeps_serving(
    echo: Frontend, make_chain: Callable[[FrontendQueue, GuestRam], int]
) -> None:
    (queue,) = echo.start_device(1, 64)[:1]
    assert echo.ram is not None
    head = make_chain(queue, echo.ram)
    queue.publish()
    assert queue.wait_used(1) == [(head, 0)]
    assert echo_round_trip(echo, queue, b"still serving") == b"still serving"
    assert not echo.get_status() & STATUS_NEEDS_RESET


def test_gpu_set_socket_fails_on_a_device_that_takes_none(echo: Frontend) -> None:
    """GPU_SET_SOCKET goes to the backend's `gpu_socket` hook, which refuses it unless
    the device is a GPU; the fd is closed and the connection goes on."""
    echo.negotiate()
    ours, theirs = socket.socketpair()
    try:
        with pytest.raises(ProtocolError, match="rejected"):
            echo.request(Request.GPU_SET_SOCKET, fds=[theirs.fileno()], need_reply=True)
        theirs.close()
        ours.settimeout(5)
        assert ours.recv(1) == b""  # the backend's copy of the fd was closed
    finally:
        ours.close()
    assert echo.get_queue_num() == 2


def test_gpu_set_socket_reaches_the_backend_hook(tmp_path: Path) -> None:
    from vhost_user_core.testing.harness import connected_frontend

    got: list[socket.socket] = []

    class GpuLike(EchoBackend):
        def gpu_socket(self, sock: socket.socket) -> None:
            got.append(sock)

    with connected_frontend(GpuLike, tmp_path / "gpu.sock") as frontend:
        frontend.negotiate()
        ours, theirs = socket.socketpair()
        frontend.gpu_set_socket(theirs.fileno())
        theirs.close()
        frontend.sync()
        (sock,) = got
        sock.sendall(b"display")
        assert ours.recv(16) == b"display"
        sock.close()
        ours.close()
