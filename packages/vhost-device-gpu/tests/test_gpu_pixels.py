"""The C pixel copies on their own: ranges checked before a byte moves, scatter lists
crossed at any byte, channel orders."""

from __future__ import annotations

import sysconfig

import pytest

from vhost_device_gpu import _pixels


def test_the_module_is_compiled() -> None:
    assert _pixels.__file__ is not None
    assert _pixels.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX"))


def _backing(*parts: bytes) -> _pixels.Backing:
    return _pixels.Backing([memoryview(bytearray(p)) for p in parts])


def test_backing_reads_across_segments() -> None:
    b = _backing(b"abc", b"", b"defg", b"h")
    assert b.size == 8
    assert b.read(0, 8) == b"abcdefgh"
    assert b.read(2, 3) == b"cde"
    with pytest.raises(ValueError):
        b.read(6, 3)


def test_gather_rows_with_strides() -> None:
    b = _backing(b"0123", b"4567", b"89ab")
    dst = bytearray(8)
    _pixels.gather(b, 1, 5, 2, 2, dst, 4, 2)  # rows "12" and "67" at dst 4 and 6
    assert bytes(dst) == b"\0\0\0\x001267"


def test_gather_refuses_out_of_range() -> None:
    b = _backing(bytes(16))
    with pytest.raises(ValueError, match="guest backing"):
        _pixels.gather(b, 0, 8, 8, 3, bytearray(64), 0, 8)
    with pytest.raises(ValueError, match="resource"):
        _pixels.gather(b, 0, 8, 8, 2, bytearray(15), 0, 8)
    with pytest.raises(ValueError):
        _pixels.gather(b, (1 << 64) - 1, 8, 8, 1, bytearray(64), 0, 8)  # no wrap-around


def test_copy_rect() -> None:
    src = bytes(range(16))
    dst = bytearray(8)
    _pixels.copy_rect(src, 4, 8, 4, 2, dst, 0, 4)
    assert bytes(dst) == bytes([4, 5, 6, 7, 12, 13, 14, 15])
    with pytest.raises(ValueError, match="source"):
        _pixels.copy_rect(src, 12, 8, 4, 2, dst, 0, 4)


def test_swizzle() -> None:
    buf = bytearray(b"RGBA" * 2)
    _pixels.swizzle(buf, 2, 1, 0, 3, False)
    assert bytes(buf) == b"BGRA" * 2
    buf = bytearray(b"XBGR")
    _pixels.swizzle(buf, 1, 2, 3, 0, True)
    assert bytes(buf) == b"BGR\xff"
    with pytest.raises(ValueError):
        _pixels.swizzle(bytearray(3), 0, 1, 2, 3, False)
