"""Codecs of the vhost-user wire format, including malformed input."""

from __future__ import annotations

import pytest

from vhost_user_core.errors import ProtocolError
from vhost_user_core.protocol import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    REQUEST_SPECS,
    U64,
    ConfigSpace,
    Header,
    HeaderFlag,
    MemoryRegionDesc,
    MemTable,
    Request,
    SingleRegion,
    VringAddr,
    VringState,
    check_fd_count,
    decode_payload,
    vring_fd_index,
)


def test_every_request_id_has_a_spec() -> None:
    assert set(REQUEST_SPECS) == set(Request)
    assert [r.value for r in Request] == list(range(1, 45))


@pytest.mark.parametrize(
    "payload",
    [
        U64(7),
        VringState(1, 256),
        VringAddr(0, 0, 1, 2, 3, 4),
        MemTable((MemoryRegionDesc(0, 4096, 0x7000, 0), MemoryRegionDesc(4096, 8192, 1, 2))),
        SingleRegion(MemoryRegionDesc(1 << 32, 1 << 20, 5, 6)),
        ConfigSpace(4, 3, 0, b"abc"),
    ],
)
def test_round_trip(payload: object) -> None:
    assert type(payload).decode(payload.encode()) == payload  # type: ignore[attr-defined]


def test_header_round_trip() -> None:
    header = Header(Request.GET_FEATURES, HeaderFlag.VERSION | HeaderFlag.NEED_REPLY, 8)
    decoded = Header.decode(header.encode())
    assert decoded == header and decoded.need_reply


def test_truncated_header() -> None:
    with pytest.raises(ProtocolError, match="truncated header"):
        Header.decode(b"\x01\x00\x00\x00\x01")


def test_bad_version() -> None:
    with pytest.raises(ProtocolError, match="version"):
        Header.decode(Header(1, 0x2, 0).encode())


def test_oversized_payload_rejected() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        Header.decode(Header(1, 1, MAX_PAYLOAD + 1).encode())
    assert HEADER_SIZE == 12


@pytest.mark.parametrize(
    "request_id, payload",
    [
        (Request.SET_FEATURES, b"\x00" * 7),
        (Request.SET_VRING_NUM, b"\x00" * 9),
        (Request.SET_VRING_ADDR, b"\x00" * 39),
        (Request.SET_MEM_TABLE, b"\x00" * 4),
        (Request.ADD_MEM_REG, b"\x00" * 32),
    ],
)
def test_wrong_payload_size(request_id: Request, payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(request_id, payload)


def test_mem_table_region_count_bounds() -> None:
    with pytest.raises(ProtocolError, match="regions"):
        MemTable.decode(b"\x00" * 8)
    with pytest.raises(ProtocolError, match="regions"):
        MemTable.decode((9).to_bytes(4, "little") + b"\x00" * (4 + 9 * 32))


def test_mem_table_accepts_qemu_padding() -> None:
    table = MemTable((MemoryRegionDesc(0, 4096, 0, 0),))
    padded = table.encode() + b"\x00" * (7 * 32)
    assert MemTable.decode(padded) == table


def test_config_size_must_match_body() -> None:
    with pytest.raises(ProtocolError):
        ConfigSpace.decode(ConfigSpace(0, 4, 0, b"abcd").encode()[:-1])
    with pytest.raises(ProtocolError):
        ConfigSpace.decode(
            (0).to_bytes(4, "little") + (300).to_bytes(4, "little") + bytes(4) + bytes(300)
        )


def test_vring_fd_word() -> None:
    assert vring_fd_index(3) == (3, True)
    assert vring_fd_index(0x100 | 2) == (2, False)
    with pytest.raises(ProtocolError, match="reserved"):
        vring_fd_index(0x200)


def test_fd_counts() -> None:
    check_fd_count(Request.SET_MEM_TABLE, 8)
    with pytest.raises(ProtocolError, match="fds"):
        check_fd_count(Request.SET_MEM_TABLE, 0)
    with pytest.raises(ProtocolError, match="fds"):
        check_fd_count(Request.GET_FEATURES, 1)
