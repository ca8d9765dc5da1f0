"""The host side: the images behind the LUNs, behind the `Image` protocol.

`FileImage` is the real one (a raw file or block device); `MemoryImage` is the shipped
double (`mem:SIZE` on the command line), a memfd, so the very same system calls run on
it and a test needs no file. Their I/O methods run on the I/O pool's threads: preadv,
pwritev, fdatasync and fallocate all release the GIL.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .errors import ImageError

log = logging.getLogger(__name__)

BLOCK_SIZE = 512
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
#: Writes of a repeated block (WRITE SAME) go out this many bytes at a time.
FILL_CHUNK = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_fallocate.restype = ctypes.c_int


class Image(Protocol):
    """One LUN's storage. The I/O methods raise OSError (the pool turns its errno into
    sense data); every range they get has been checked against `blocks()`."""

    @property
    def name(self) -> str: ...
    @property
    def block_size(self) -> int: ...
    @property
    def read_only(self) -> bool: ...
    @property
    def serial(self) -> str: ...
    def blocks(self) -> int: ...
    def readinto(self, views: Sequence[memoryview], offset: int) -> int: ...
    def read_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        """Fill `views` only if that needs no waiting (the page cache has it, or the
        image is in memory): True if done, False to leave it to the pool."""

    def write_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        """Write `views` only if the image is in memory (tmpfs, memfd): no waiting."""

    def write(self, views: Sequence[memoryview], offset: int) -> int: ...
    def direct_io(self) -> tuple[int, bool] | None:
        """(fd, in memory) for the C fast path to read and write the image itself, as
        `readinto`/`write` and the `*_cached` checks would; None: these methods must run."""

    def sync(self) -> None: ...
    def discard(self, offset: int, length: int) -> None: ...
    def fill(self, offset: int, length: int, pattern: bytes) -> None: ...
    def close(self) -> None: ...


def _advance(views: list[memoryview], done: int) -> list[memoryview]:
    """The views left after the first `done` bytes (a short preadv/pwritev)."""
    while views and done >= len(views[0]):
        done -= len(views[0])
        views = views[1:]
    if views and done:
        views = [views[0][done:], *views[1:]]
    return views


class FdImage:
    """An image on a file descriptor; the real image and the double share it."""

    def __init__(self, fd: int, name: str, *, read_only: bool, serial: str) -> None:
        self.fd = fd
        self.name = name
        self.block_size = BLOCK_SIZE
        self.read_only = read_only
        self.serial = serial
        self._punch = True  # until the filesystem says otherwise
        #: On tmpfs (or a memfd): no I/O ever waits for a disk, so it runs inline.
        self.in_memory = in_memory(fd)

    def blocks(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_END) // self.block_size

    def readinto(self, views: Sequence[memoryview], offset: int) -> int:
        left, total = list(views), 0
        while left:
            n = os.preadv(self.fd, left, offset + total)
            if n == 0:  # the image shrank under us: the rest reads as zeros
                for view in left:
                    view[:] = bytes(len(view))
                return total
            total += n
            left = _advance(left, n)
        return total

    def read_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        if self.in_memory:
            try:
                self.readinto(views, offset)
                return True
            except OSError:
                return False  # the pool tries again and reports the error
        want = sum(len(view) for view in views)
        try:
            return os.preadv(self.fd, views, offset, os.RWF_NOWAIT) == want
        except OSError:
            return False  # not cached, or RWF_NOWAIT unsupported here: the pool reads

    def write_cached(self, views: Sequence[memoryview], offset: int) -> bool:
        if not self.in_memory:
            return False
        try:
            self.write(views, offset)
            return True
        except OSError:
            return False  # ENOSPC on a full tmpfs: the pool tries again and reports it

    def write(self, views: Sequence[memoryview], offset: int) -> int:
        left, total = list(views), 0
        while left:
            n = os.pwritev(self.fd, left, offset + total)
            total += n
            left = _advance(left, n)
        return total

    def direct_io(self) -> tuple[int, bool] | None:
        return self.fd, self.in_memory

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def discard(self, offset: int, length: int) -> None:
        if self._punch:
            mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            if _fallocate(self.fd, mode, offset, length) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(err, os.strerror(err))
            log.info("%s: no hole punching here; UNMAP writes zeros", self.name)
            self._punch = False
        self.fill(offset, length, bytes(self.block_size))

    def fill(self, offset: int, length: int, pattern: bytes) -> None:
        chunk = pattern * max(1, min(length, FILL_CHUNK) // len(pattern))
        end = offset + length
        while offset < end:
            piece = memoryview(chunk)[: min(len(chunk), end - offset)]
            offset += self.write([piece], offset)

    def close(self) -> None:
        os.close(self.fd)


def in_memory(fd: int) -> bool:
    """Whether `fd` is a memfd or a file on tmpfs/ramfs (its device in mountinfo)."""
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
            return True
        dev = os.fstat(fd).st_dev
        wanted = f"{os.major(dev)}:{os.minor(dev)}"
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:
                fields = line.split()
                if fields[2] == wanted and " - " in line:
                    return line.split(" - ", 1)[1].split()[0] in ("tmpfs", "ramfs")
    except OSError:
        pass
    return False


def _serial(text: str) -> str:
    """A stable unit serial number (VPD 80h) from the image's identity."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FileImage(FdImage):
    """A raw image file or block device, opened read-only with `read_only`."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise ImageError(f"cannot open image {path}: {exc.strerror}", path) from exc
        st = os.fstat(fd)
        super().__init__(
            fd, str(path), read_only=read_only, serial=_serial(f"{st.st_dev}:{st.st_ino}")
        )
        self.path = path
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < self.block_size:
            os.close(fd)
            raise ImageError(
                f"image {path} is {size} bytes, under one {self.block_size}-byte block", path
            )
        if size % self.block_size:
            log.warning(
                "%s: the last %d bytes are not a whole block and stay unseen",
                path,
                size % self.block_size,
            )


class MemoryImage(FdImage):
    """The double: a zero-filled memfd of `size` bytes (`mem:SIZE`)."""

    def __init__(self, size: int, *, read_only: bool = False, name: str = "mem") -> None:
        if size < BLOCK_SIZE or size % BLOCK_SIZE:
            raise ImageError(
                f"{name}: {size} bytes is not a whole number of {BLOCK_SIZE}-byte blocks"
            )
        fd = os.memfd_create("vhost-device-scsi", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        super().__init__(
            fd, name, read_only=read_only, serial=_serial(f"{name}:{os.getpid()}:{fd}")
        )


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """`64M`, `1G`, `4096` (K, M, G are powers of 1024)."""
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in _UNITS and body[-1:] else ""
    number = body[: len(body) - len(unit)]
    if not number.isdigit():
        raise ValueError(f"{text!r} is not a size (like 64M)")
    return int(number) * _UNITS[unit]


def open_image(spec: str, *, read_only: bool) -> Image:
    """A positional IMAGE: a path, or `mem:SIZE` for the in-memory double."""
    if spec.startswith("mem:"):
        try:
            size = parse_size(spec[4:])
        except ValueError as exc:
            raise ImageError(f"{spec}: {exc}") from None
        return MemoryImage(size, read_only=read_only, name=spec)
    return FileImage(Path(spec), read_only=read_only)
