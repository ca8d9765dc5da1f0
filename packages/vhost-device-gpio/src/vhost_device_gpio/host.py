"""The host side of a GPIO chip behind a small interface: `GpiodChip` (a real
/dev/gpiochipN through libgpiod v2) and the shipped double `MockChip` (sN).

Edges are what a chip reports; the device turns them into the guest's edge and level
interrupts. Each line whose edges are watched has a file descriptor that becomes
readable when an edge is queued, so a connection's worker epoll waits for all its lines
at once: no thread per waiting line.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Protocol

from .errors import LineError
from .protocol import Direction

log = logging.getLogger(__name__)

CONSUMER = "vhost-device-gpio"


class Edges(enum.IntEnum):
    """Which edges a chip reports for a line."""

    NONE = 0
    RISING = 1
    FALLING = 2
    BOTH = 3


class Chip(Protocol):
    """One GPIO chip, used by one connection at a time (on its worker thread)."""

    name: str

    @property
    def num_lines(self) -> int: ...

    def line_names(self) -> list[str]: ...

    def direction(self, line: int) -> Direction: ...

    def set_direction(self, line: int, direction: Direction) -> None:
        """NONE releases the line; OUT drives the value last given to set_value."""

    def value(self, line: int) -> int: ...

    def set_value(self, line: int, value: int) -> None:
        """Drives an output line; for any other line, kept for when it becomes one."""

    def watch(self, line: int, edges: Edges) -> int | None:
        """Report `edges` of an input line; returns the fd that is readable while
        edges are queued (None for Edges.NONE, which stops the reports)."""

    def read_edges(self, line: int) -> list[bool]:
        """The queued edges of `line`, oldest first: True rising, False falling."""

    def release_all(self) -> None:
        """Release every line: the connection ended."""

    def close(self) -> None: ...


class MockChip:
    """The double: `n` lines named gpio0.., every change logged; the input level of each
    line is driven from outside (`drive`, from the --mock-control thread)."""

    def __init__(self, n: int, name: str = "mock") -> None:
        self.name = name
        self._n = n
        self._lock = threading.Lock()
        self._input = [0] * n  # driven from outside; survives connections
        self._reset()

    def _reset(self) -> None:
        self._direction = [Direction.IN] * self._n
        self._output = [0] * self._n
        self._edges = [Edges.NONE] * self._n
        self._queued: list[deque[bool]] = [deque() for _ in range(self._n)]
        self._fds: dict[int, int] = {}

    @property
    def num_lines(self) -> int:
        return self._n

    def line_names(self) -> list[str]:
        return [f"gpio{i}" for i in range(self._n)]

    def direction(self, line: int) -> Direction:
        return self._direction[line]

    def set_direction(self, line: int, direction: Direction) -> None:
        with self._lock:
            if direction is not Direction.IN and self._edges[line] is not Edges.NONE:
                raise LineError(f"{self.name} line {line}: edges are watched", self.name, line)
            self._direction[line] = direction
        log.info("%s line %d: direction %s", self.name, line, direction.name.lower())

    def value(self, line: int) -> int:
        with self._lock:
            if self._direction[line] is Direction.OUT:
                return self._output[line]
            return self._input[line]

    def set_value(self, line: int, value: int) -> None:
        self._output[line] = value
        log.info("%s line %d: value %d", self.name, line, value)

    def watch(self, line: int, edges: Edges) -> int | None:
        with self._lock:
            if edges is not Edges.NONE and self._direction[line] is Direction.OUT:
                raise LineError(f"{self.name} line {line}: an output has no edges", self.name, line)
            self._edges[line] = edges
            self._queued[line].clear()
            fd = self._fds.pop(line, None)
            if fd is not None:
                os.close(fd)
            if edges is Edges.NONE:
                return None
            if self._direction[line] is Direction.NONE:
                self._direction[line] = Direction.IN
            fd = self._fds[line] = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        log.info("%s line %d: edges %s", self.name, line, edges.name.lower())
        return fd

    def read_edges(self, line: int) -> list[bool]:
        with self._lock:
            fd = self._fds.get(line)
            if fd is not None:
                try:
                    os.eventfd_read(fd)
                except BlockingIOError:
                    pass
            edges = list(self._queued[line])
            self._queued[line].clear()
            return edges

    def drive(self, line: int, level: int) -> None:
        """Set the level the outside world puts on `line` (thread-safe)."""
        if not 0 <= line < self._n:
            raise LineError(f"{self.name} has lines 0..{self._n - 1}", self.name, line)
        with self._lock:
            old, self._input[line] = self._input[line], level
            rising = level > old
            wanted = Edges.RISING if rising else Edges.FALLING
            fd = self._fds.get(line)
            if old != level and self._edges[line] & wanted and fd is not None:
                self._queued[line].append(rising)
                os.eventfd_write(fd, 1)
        log.info("%s line %d: input driven to %d", self.name, line, level)

    def release_all(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._reset()

    def close(self) -> None:
        self.release_all()


class GpiodChip:
    """A host /dev/gpiochipN through the gpiod package (libgpiod v2). Each line the guest
    uses is one line request, reconfigured in place (direction, value, edges) and never
    requested twice; releasing it (direction NONE, disconnect) gives it back."""

    def __init__(self, path: Path) -> None:
        import gpiod  # only a host chip needs libgpiod

        self._gpiod = gpiod
        self.name = str(path)
        try:
            self._chip = gpiod.Chip(str(path))
            self._n = self._chip.get_info().num_lines
            # Read once: a chip's names do not change, and a failure is a startup error.
            self._names = [self._chip.get_line_info(i).name or "" for i in range(self._n)]
        except OSError as exc:
            raise LineError(f"cannot open {path}: {exc.strerror}", self.name) from exc
        self._requests: dict[int, gpiod.LineRequest] = {}
        self._settings: dict[int, gpiod.LineSettings] = {}
        self._values = [0] * self._n

    @property
    def num_lines(self) -> int:
        return self._n

    def _fail(self, line: int, what: str, exc: OSError) -> LineError:
        return LineError(f"{self.name} line {line}: {what}: {exc.strerror or exc}", self.name, line)

    def line_names(self) -> list[str]:
        return list(self._names)

    def direction(self, line: int) -> Direction:
        if line in self._settings:
            held = self._settings[line].direction
        else:
            try:
                held = self._chip.get_line_info(line).direction
            except OSError as exc:
                raise self._fail(line, "cannot read line info", exc) from exc
        return Direction.OUT if held == self._gpiod.line.Direction.OUTPUT else Direction.IN

    def _apply(self, line: int, settings: object) -> None:
        """Request the line with `settings`, or reconfigure the request already held."""
        gpiod = self._gpiod
        assert isinstance(settings, gpiod.LineSettings)
        try:
            request = self._requests.get(line)
            if request is None:
                self._requests[line] = self._chip.request_lines({line: settings}, consumer=CONSUMER)
            else:
                request.reconfigure_lines({line: settings})
        except OSError as exc:
            raise self._fail(line, "cannot configure", exc) from exc
        self._settings[line] = settings

    def _release(self, line: int) -> None:
        request = self._requests.pop(line, None)
        self._settings.pop(line, None)
        if request is not None:
            request.release()

    def set_direction(self, line: int, direction: Direction) -> None:
        gpiod = self._gpiod
        if direction is Direction.NONE:
            self._release(line)
            return
        settings = gpiod.LineSettings()
        if direction is Direction.OUT:
            settings.direction = gpiod.line.Direction.OUTPUT
            settings.output_value = gpiod.line.Value(self._values[line])
        else:
            held = self._settings.get(line)
            settings.direction = gpiod.line.Direction.INPUT
            settings.edge_detection = held.edge_detection if held else gpiod.line.Edge.NONE
        self._apply(line, settings)

    def value(self, line: int) -> int:
        request = self._requests.get(line)
        try:
            if request is None:  # a passing look, as the kernel's own tools do
                with self._chip.request_lines({line: None}, consumer=CONSUMER) as request:
                    return self._level(request.get_value(line))
            return self._level(request.get_value(line))
        except OSError as exc:
            raise self._fail(line, "cannot read", exc) from exc

    def _level(self, value: object) -> int:
        return 1 if value == self._gpiod.line.Value.ACTIVE else 0

    def set_value(self, line: int, value: int) -> None:
        self._values[line] = value
        settings = self._settings.get(line)
        if settings is None or settings.direction != self._gpiod.line.Direction.OUTPUT:
            return
        try:
            self._requests[line].set_value(line, self._gpiod.line.Value(value))
        except OSError as exc:
            raise self._fail(line, "cannot write", exc) from exc
        settings.output_value = self._gpiod.line.Value(value)

    def watch(self, line: int, edges: Edges) -> int | None:
        gpiod = self._gpiod
        held = self._settings.get(line)
        if held is not None and held.direction == gpiod.line.Direction.OUTPUT:
            raise LineError(f"{self.name} line {line}: an output has no edges", self.name, line)
        edge = {
            Edges.NONE: gpiod.line.Edge.NONE,
            Edges.RISING: gpiod.line.Edge.RISING,
            Edges.FALLING: gpiod.line.Edge.FALLING,
            Edges.BOTH: gpiod.line.Edge.BOTH,
        }[edges]
        self._apply(
            line, gpiod.LineSettings(direction=gpiod.line.Direction.INPUT, edge_detection=edge)
        )
        return self._requests[line].fd if edges is not Edges.NONE else None

    def read_edges(self, line: int) -> list[bool]:
        request = self._requests.get(line)
        if request is None or not self._readable(request.fd):
            return []
        try:
            events = request.read_edge_events()
        except OSError as exc:
            raise self._fail(line, "cannot read edges", exc) from exc
        rising = self._gpiod.EdgeEvent.Type.RISING_EDGE
        return [event.event_type == rising for event in events]

    @staticmethod
    def _readable(fd: int) -> bool:
        import select

        return bool(select.select([fd], [], [], 0)[0])

    def release_all(self) -> None:
        for line in list(self._requests):
            self._release(line)

    def close(self) -> None:
        self.release_all()
        self._chip.close()


def open_chip(spec_host: int | None, mock_lines: int | None, index: int) -> Chip:
    if mock_lines is not None:
        return MockChip(mock_lines, name=f"mock{index}")
    assert spec_host is not None
    return GpiodChip(Path(f"/dev/gpiochip{spec_host}"))
