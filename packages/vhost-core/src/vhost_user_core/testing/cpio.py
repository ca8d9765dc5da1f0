"""A newc ("070701") cpio writer: enough to build initramfs archives without root."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    """One archive member: a regular file, a directory or a symlink."""

    name: str
    data: bytes = b""
    mode: int = stat.S_IFREG | 0o644
    link: str | None = None

    @classmethod
    def directory(cls, name: str) -> Entry:
        return cls(name, mode=stat.S_IFDIR | 0o755)

    @classmethod
    def executable(cls, name: str, data: bytes) -> Entry:
        return cls(name, data, stat.S_IFREG | 0o755)

    @classmethod
    def symlink(cls, name: str, target: str) -> Entry:
        return cls(name, target.encode(), stat.S_IFLNK | 0o777, target)


def _pad(out: io.BytesIO) -> None:
    out.write(b"\0" * (-out.tell() % 4))


def write_newc(entries: Iterable[Entry]) -> bytes:
    """Serialise `entries` (parents before children) into a newc archive."""
    out = io.BytesIO()
    ino = 1
    for entry in [*entries, Entry("TRAILER!!!", mode=0)]:
        name = entry.name.lstrip("/").encode() + b"\0"
        fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name), 0]
        out.write(b"070701" + b"".join(f"{v:08x}".encode() for v in fields))
        out.write(name)
        _pad(out)
        out.write(entry.data)
        _pad(out)
        ino += 1
    return out.getvalue()
