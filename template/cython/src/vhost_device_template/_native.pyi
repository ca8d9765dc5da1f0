"""The device's C (see _native.pyx)."""

from typing_extensions import Buffer

def byte_sum(data: Buffer) -> int:
    """The sum of `data`'s bytes, computed without the GIL."""
