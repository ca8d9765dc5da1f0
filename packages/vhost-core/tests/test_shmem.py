"""vhost-user shared memory (SHMEM): GET_SHMEM_CONFIG, the backend's SHMEM_MAP /
SHMEM_UNMAP over the backend channel with the fd passed, and the VMM side of our frontend
mmapping what it is given; the hostile ranges refused on both sides."""

from __future__ import annotations

import mmap
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from echo_backend import EchoBackend

from vhost_user_core.connection import Connection
from vhost_user_core.errors import ProtocolError
from vhost_user_core.frontend import Frontend, VmmSharedMemory
from vhost_user_core.protocol import (
    SHMEM_BIT,
    U64,
    BackendRequest,
    HeaderFlag,
    ProtocolFeature,
    Request,
    ShmemConfig,
    ShmemMap,
)
from vhost_user_core.shmem import SharedMemory, SharedMemoryError
from vhost_user_core.testing.harness import connected_frontend

PAGE = mmap.PAGESIZE
REGION = 16 * PAGE


class ShmemBackend(EchoBackend):
    """The echo device with one shared-memory region at shmid 1 (0 unused, as a GPU's)."""

    shmem: SharedMemory | None = None

    def shmem_regions(self) -> tuple[int, ...]:
        return (0, REGION)

    def attach_shmem(self, shmem: SharedMemory) -> None:
        self.shmem = shmem


def memfd(data: bytes, size: int = 4 * PAGE) -> int:
    fd = os.memfd_create("shmem-test", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    os.pwrite(fd, data, 0)
    return fd


@pytest.fixture
def shm(tmp_path: Path) -> Iterator[tuple[Frontend, ShmemBackend]]:
    EchoBackend.instances.clear()
    with connected_frontend(ShmemBackend, tmp_path / "shm.sock") as frontend:
        frontend.negotiate()
        backend = EchoBackend.instances[-1]
        assert isinstance(backend, ShmemBackend) and backend.shmem is not None
        yield frontend, backend


def test_bit_is_21_as_vmsilo_negotiates() -> None:
    assert SHMEM_BIT == 21
    assert int(ProtocolFeature.SHMEM) == 0x0020_0000


def test_codecs_round_trip() -> None:
    config = ShmemConfig((0, 1 << 20, 0, 4096))
    data = config.encode()
    assert len(data) == 8 + 256 * 8
    assert data[:4] == (2).to_bytes(4, "little")
    assert ShmemConfig.decode(data) == config
    m = ShmemMap(1, 0x1000, 0x2000, 0x3000, 1)
    assert len(m.encode()) == 40 and m.encode()[1:8] == bytes(7)
    assert ShmemMap.decode(m.encode()) == m and m.writable


def test_config_with_a_wrong_count_or_size_is_refused() -> None:
    data = bytearray(ShmemConfig((0, 4096)).encode())
    data[0] = 5
    with pytest.raises(ProtocolError):
        ShmemConfig.decode(bytes(data))
    with pytest.raises(ProtocolError):
        ShmemConfig.decode(bytes(data[:-8]))
    with pytest.raises(ProtocolError):
        ShmemMap.decode(bytes(39))


def test_offered_only_by_a_device_with_regions(
    echo: Frontend, shm: tuple[Frontend, ShmemBackend]
) -> None:
    assert not echo.get_protocol_features() & ProtocolFeature.SHMEM
    frontend, _ = shm
    offered = frontend.get_protocol_features()
    for bit in (
        ProtocolFeature.SHMEM,
        ProtocolFeature.BACKEND_REQ,
        ProtocolFeature.BACKEND_SEND_FD,
    ):
        assert offered & bit
    assert frontend.get_shmem_config() == (0, REGION)


def test_get_shmem_config_needs_the_feature(echo: Frontend) -> None:
    echo.negotiate()
    answer = echo.request(Request.GET_SHMEM_CONFIG, reply=True)
    assert answer is not None and ShmemConfig.decode(answer).sizes == ()


def test_map_passes_the_fd_and_the_vmm_sees_its_pages(shm: tuple[Frontend, ShmemBackend]) -> None:
    frontend, backend = shm
    vmm = frontend.open_shmem()
    assert backend.shmem is not None and backend.shmem.ready
    fd = memfd(b"guest sees this")
    try:
        backend.shmem.map(1, fd, shm_offset=2 * PAGE, length=2 * PAGE)
        assert bytes(vmm.view(1, 2 * PAGE, 15)) == b"guest sees this"
        vmm.view(1, 3 * PAGE, 4)[:] = b"back"  # the guest writes: the fd's pages change
        assert os.pread(fd, 4, PAGE) == b"back"
        ((request, payload, ok),) = vmm.wait_requests(1)
        assert request == BackendRequest.SHMEM_MAP and ok
        assert payload == ShmemMap(1, 0, 2 * PAGE, 2 * PAGE, 1)
        backend.shmem.unmap(1, 2 * PAGE, 2 * PAGE)
        assert vmm.wait_requests(2)[1][:1] == (BackendRequest.SHMEM_UNMAP,)
        assert not vmm.maps and not backend.shmem.mappings
        with pytest.raises(Exception, match="not mapped"):
            vmm.view(1, 2 * PAGE, 1)
    finally:
        os.close(fd)


def test_read_only_map(shm: tuple[Frontend, ShmemBackend]) -> None:
    frontend, backend = shm
    vmm = frontend.open_shmem()
    assert backend.shmem is not None
    fd = memfd(b"keymap")
    try:
        backend.shmem.map(1, fd, shm_offset=0, length=PAGE, writable=False)
        assert vmm.maps[(1, 0)].writable is False
        assert bytes(vmm.view(1, 0, 6)) == b"keymap"
        with pytest.raises(TypeError):
            vmm.view(1, 0, 1)[:] = b"x"
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("shmid", "offset", "length", "why"),
    [
        (0, 0, PAGE, "no shared memory region 0"),  # the unused id
        (2, 0, PAGE, "no shared memory region 2"),
        (255, 0, PAGE, "no shared memory region 255"),
        (1, REGION - PAGE, 2 * PAGE, "outside region"),
        (1, REGION, PAGE, "outside region"),
        (1, 1 << 63, PAGE, "outside region"),
        (1, 100, PAGE, "not whole pages"),
        (1, 0, 100, "not whole pages"),
        (1, 0, 0, "not whole pages"),
    ],
)
def test_bad_ranges_never_reach_the_vmm(
    shm: tuple[Frontend, ShmemBackend], shmid: int, offset: int, length: int, why: str
) -> None:
    frontend, backend = shm
    vmm = frontend.open_shmem()
    assert backend.shmem is not None
    fd = memfd(b"")
    try:
        with pytest.raises(SharedMemoryError, match=why):
            backend.shmem.map(shmid, fd, shm_offset=offset, length=length)
    finally:
        os.close(fd)
    assert not vmm.requests


def test_overlapping_map_is_refused(shm: tuple[Frontend, ShmemBackend]) -> None:
    frontend, backend = shm
    frontend.open_shmem()
    assert backend.shmem is not None
    fd = memfd(b"")
    try:
        backend.shmem.map(1, fd, shm_offset=4 * PAGE, length=4 * PAGE)
        for offset, length in ((4 * PAGE, PAGE), (2 * PAGE, 3 * PAGE), (7 * PAGE, 4 * PAGE)):
            with pytest.raises(SharedMemoryError, match="overlaps"):
                backend.shmem.map(1, fd, shm_offset=offset, length=length)
        backend.shmem.map(1, fd, shm_offset=8 * PAGE, length=PAGE)  # adjacent is fine
        with pytest.raises(SharedMemoryError, match="no mapping"):
            backend.shmem.unmap(1, 4 * PAGE, PAGE)  # not the mapped range
    finally:
        os.close(fd)


def test_vmm_refusal_reaches_the_device(shm: tuple[Frontend, ShmemBackend]) -> None:
    """A VMM that reserved less than the device declared refuses the map: the device
    gets SharedMemoryError, its bookkeeping keeps nothing."""
    frontend, backend = shm
    frontend.open_shmem(sizes=(0, PAGE))
    assert backend.shmem is not None
    fd = memfd(b"")
    try:
        with pytest.raises(SharedMemoryError, match="refused"):
            backend.shmem.map(1, fd, shm_offset=4 * PAGE, length=PAGE)
        assert not backend.shmem.mappings
    finally:
        os.close(fd)


def test_map_without_a_backend_channel_fails(shm: tuple[Frontend, ShmemBackend]) -> None:
    _, backend = shm
    assert backend.shmem is not None and not backend.shmem.ready
    with pytest.raises(SharedMemoryError, match="no backend channel"):
        backend.shmem.map(1, 0, shm_offset=0, length=PAGE)


def test_reset_drops_every_mapping(shm: tuple[Frontend, ShmemBackend]) -> None:
    frontend, backend = shm
    vmm = frontend.open_shmem()
    assert backend.shmem is not None
    fd = memfd(b"")
    try:
        backend.shmem.map(1, fd, shm_offset=0, length=PAGE)
        frontend.reset_device()
        assert not vmm.maps and not backend.shmem.mappings
        backend.shmem.map(1, fd, shm_offset=0, length=PAGE)  # the range is free again
    finally:
        os.close(fd)


def raw_vmm(sizes: tuple[int, ...]) -> tuple[VmmSharedMemory, Connection]:
    ours, theirs = socket.socketpair()
    return VmmSharedMemory(sizes, ours), Connection(theirs)


def ask(backend_end: Connection, request: int, payload: bytes, fds: tuple[int, ...] = ()) -> int:
    backend_end.send(request, payload, fds, flags=HeaderFlag.VERSION | HeaderFlag.NEED_REPLY)
    reply = backend_end.recv()
    assert reply.header.flags & HeaderFlag.REPLY and reply.header.request == request
    return U64.decode(reply.payload).value


@pytest.mark.parametrize(
    ("payload", "with_fd"),
    [
        (ShmemMap(0, 0, 0, PAGE, 1).encode(), True),  # unused shmid
        (ShmemMap(9, 0, 0, PAGE, 1).encode(), True),  # unknown shmid
        (ShmemMap(1, 0, 3 * PAGE, 2 * PAGE, 1).encode(), True),  # past the end
        (ShmemMap(1, 0, 1, PAGE, 1).encode(), True),  # unaligned
        (ShmemMap(1, 0, 0, PAGE, 1).encode(), False),  # no fd
        (ShmemMap(1, 0, 0, PAGE, 1).encode()[:39], True),  # short
        (ShmemMap(1, 0, 0, 0, 1).encode(), True),  # empty
    ],
)
def test_vmm_refuses_a_hostile_map(payload: bytes, with_fd: bool) -> None:
    """Our frontend as a VMM checks what a backend it does not trust sends."""
    vmm, backend_end = raw_vmm((0, 4 * PAGE))
    fd = memfd(b"")
    try:
        assert ask(backend_end, BackendRequest.SHMEM_MAP, payload, (fd,) if with_fd else ()) == 1
        assert not vmm.maps
    finally:
        os.close(fd)
        backend_end.close()
        vmm.close()


def test_vmm_refuses_overlap_and_unknown_unmap() -> None:
    vmm, backend_end = raw_vmm((0, 4 * PAGE))
    fd = memfd(b"")
    try:
        assert (
            ask(
                backend_end,
                BackendRequest.SHMEM_MAP,
                ShmemMap(1, 0, 0, 2 * PAGE, 1).encode(),
                (fd,),
            )
            == 0
        )
        assert (
            ask(
                backend_end, BackendRequest.SHMEM_MAP, ShmemMap(1, 0, PAGE, PAGE, 1).encode(), (fd,)
            )
            == 1
        )
        assert ask(backend_end, BackendRequest.SHMEM_UNMAP, ShmemMap(1, 0, 0, PAGE).encode()) == 1
        assert (
            ask(backend_end, BackendRequest.SHMEM_UNMAP, ShmemMap(1, 0, 0, 2 * PAGE).encode()) == 0
        )
        assert ask(backend_end, BackendRequest.VRING_CALL, ShmemMap(1, 0, 0, PAGE).encode()) == 1
        assert not vmm.maps
    finally:
        os.close(fd)
        backend_end.close()
        vmm.close()


def test_a_vmm_that_never_answers_fails_the_map(
    shm: tuple[Frontend, ShmemBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The map waits for the REPLY_ACK a bounded time, then fails; the device goes on."""
    import vhost_user_core.shmem

    frontend, backend = shm
    ours, theirs = socket.socketpair()
    frontend.set_backend_req_fd(theirs.fileno())  # a channel nobody serves
    theirs.close()
    monkeypatch.setattr(vhost_user_core.shmem, "REPLY_TIMEOUT", 0.2)
    assert backend.shmem is not None
    fd = memfd(b"")
    try:
        with pytest.raises(SharedMemoryError, match="backend channel"):
            backend.shmem.map(1, fd, shm_offset=0, length=PAGE)
        assert not backend.shmem.mappings
        frontend.sync()
    finally:
        os.close(fd)
        ours.close()


def test_without_reply_ack_a_map_does_not_wait(tmp_path: Path) -> None:
    EchoBackend.instances.clear()
    with connected_frontend(ShmemBackend, tmp_path / "shm.sock") as frontend:
        offered = frontend.get_protocol_features()
        frontend.negotiate(want_protocol=offered & ~ProtocolFeature.REPLY_ACK)
        backend = EchoBackend.instances[-1]
        assert isinstance(backend, ShmemBackend) and backend.shmem is not None
        vmm = frontend.open_shmem()
        # Without REPLY_ACK nothing says the channel is set up; a request with a reply,
        # served after it in order, does (else the map may race the channel's message).
        frontend.get_protocol_features()
        fd = memfd(b"no ack")
        try:
            backend.shmem.map(1, fd, shm_offset=PAGE, length=PAGE)
            ((request, _, ok),) = vmm.wait_requests(1)
            assert request == BackendRequest.SHMEM_MAP and ok
            assert bytes(vmm.view(1, PAGE, 6)) == b"no ack"
        finally:
            os.close(fd)
