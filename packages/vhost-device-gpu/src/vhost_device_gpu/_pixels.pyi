"""Pixel copies in C with the GIL released (see _pixels.pyx)."""

from collections.abc import Iterable

from typing_extensions import Buffer

class Backing:
    """A resource's guest backing: its entries' views, in order, as one byte range."""

    size: int
    def __init__(self, views: Iterable[memoryview]) -> None: ...
    def read(self, offset: int, length: int) -> bytes: ...

def gather(
    src: Backing,
    src_offset: int,
    src_stride: int,
    row_bytes: int,
    rows: int,
    dst: Buffer,
    dst_offset: int,
    dst_stride: int,
) -> None:
    """Rows from the guest backing into a host buffer; ValueError if out of range."""

def copy_rect(
    src: Buffer,
    src_offset: int,
    src_stride: int,
    row_bytes: int,
    rows: int,
    dst: Buffer,
    dst_offset: int,
    dst_stride: int,
) -> None:
    """Rows between two host buffers; ValueError if out of range."""

def swizzle(buf: Buffer, b: int, g: int, r: int, a: int, opaque: bool) -> None:
    """4-byte pixels in place into B, G, R, A order from channels at b, g, r, a."""
