"""hostside.parse_connect: the `CONNECT <port>` line a host program sends first."""

from __future__ import annotations

import pytest

from vhost_device_vsock.hostside import HandshakeError, parse_connect


def test_a_line_and_what_follows_it() -> None:
    assert parse_connect(b"CONNECT 1234\nearly data") == (1234, b"early data")
    assert parse_connect(b"CONNECT 1234\r\n") == (1234, b"")
    assert parse_connect(b"CONNECT 12") is None


@pytest.mark.parametrize(
    "line", [b"CONNECT\n", b"CONNECT x\n", b"connect 1\n", b"CONNECT 4294967296\n"]
)
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_connect(line)


def test_a_long_line_is_refused_however_it_arrives() -> None:
    """Found by fuzz/targets/vsock_connect.py: `CONNECT 1` and 40 CRs was accepted when
    its newline came in the same read, and refused when the first 33 bytes came alone
    (no newline in the first 32): the outcome hung on how the host's bytes arrived."""
    line = b"CONNECT 1" + b"\r" * 40 + b"\n"
    with pytest.raises(HandshakeError):
        parse_connect(line[:33])
    with pytest.raises(HandshakeError):
        parse_connect(line)
