"""What a cross-domain context hands the guest ids for, and how the ids are chosen.

The guest proxy relies on the numbering, so it is the protocol's, not ours to pick:
image requirements get even ids (2, 4, ...; a blob may be created from one many
times), fds from the compositor odd ids (3, 5, ...; a blob consumes one once), and the
read pipes the guest asks for ids from 0x8000_0001 up, which the guest guesses before
the host answers (so SEND checks its guess).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .protocol import PIPE_READ_START, CrossDomainProtocolError

#: Items one context may hold at once: a proxy that never creates the blobs it asked
#: requirements for cannot grow the table without bound.
MAX_ITEMS = 4096
#: Of those, items holding an fd (keymaps, pipes): a real proxy has a handful at a time,
#: and every fd counts against the daemon's RLIMIT_NOFILE.
MAX_FD_ITEMS = 32


@dataclass(frozen=True)
class Requirements:
    """A GET_IMAGE_REQUIREMENTS answer kept for CREATE_BLOB: one plane, memfd-backed."""

    width: int
    height: int
    drm_format: int
    stride: int
    size: int


@dataclass
class MemoryFd:
    """An fd of memory the compositor sent (a keymap), until the guest maps it."""

    fd: int
    size: int


@dataclass
class WritePipe:
    """The write end of a pipe the compositor sent: the guest's WRITEs go into it."""

    fd: int


@dataclass
class ReadPipe:
    """The read end of a pipe whose write end went to the compositor: READs to the guest."""

    fd: int


Item = Requirements | MemoryFd | WritePipe | ReadPipe


class ItemTable:
    def __init__(self) -> None:
        self._last_requirements = 0
        self._last_descriptor = 1
        self._last_read_pipe = PIPE_READ_START
        self.items: dict[int, Item] = {}

    def add(self, item: Item) -> int:
        """Store `item` under the next id of its kind; returns the id."""
        if len(self.items) >= MAX_ITEMS:
            raise CrossDomainProtocolError(f"more than {MAX_ITEMS} items in one context")
        if not isinstance(item, Requirements) and self.fds() >= MAX_FD_ITEMS:
            raise CrossDomainProtocolError(f"more than {MAX_FD_ITEMS} fds held in one context")
        if isinstance(item, Requirements):
            self._last_requirements += 2
            item_id = self._last_requirements
        elif isinstance(item, ReadPipe):
            self._last_read_pipe += 1
            item_id = self._last_read_pipe
        else:
            self._last_descriptor += 2
            item_id = self._last_descriptor
        self.items[item_id] = item
        return item_id

    def fds(self) -> int:
        return sum(1 for item in self.items.values() if not isinstance(item, Requirements))

    def next_read_pipe(self) -> int:
        """The id the next read pipe will get (what the guest must have guessed)."""
        return self._last_read_pipe + 1

    def get(self, item_id: int) -> Item | None:
        return self.items.get(item_id)

    def take(self, item_id: int) -> Item | None:
        return self.items.pop(item_id, None)

    def close(self) -> None:
        """Close every fd still held (the context is destroyed or failed)."""
        for item in self.items.values():
            if not isinstance(item, Requirements):
                os.close(item.fd)
        self.items.clear()
