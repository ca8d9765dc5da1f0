"""The eventq: each line's IRQ type, the one buffer it may hold, and how the chip's
edges complete it.

Edge types complete the held buffer at the edge, or latch the edge and complete the
next buffer at once (an edge while the guest had no buffer is not lost). Level types
(which upstream refuses) follow the spec: a buffer for a level-high line completes at
once if the line is high, else at its next rising edge (low: falling). Every line's
edge fd sits in the connection's worker epoll, so waiting lines cost no thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vhost_user_core import DescriptorChain, Vring, Worker

from .errors import LineError
from .host import Chip, Edges
from .protocol import IRQ_RESPONSE_SIZE, IrqStatus, IrqType, Status, decode_irq_request

log = logging.getLogger(__name__)

_EDGES = {
    IrqType.NONE: Edges.NONE,
    IrqType.EDGE_RISING: Edges.RISING,
    IrqType.EDGE_FALLING: Edges.FALLING,
    IrqType.EDGE_BOTH: Edges.BOTH,
    IrqType.LEVEL_HIGH: Edges.BOTH,  # the level is tracked from both edges
    IrqType.LEVEL_LOW: Edges.BOTH,
}


@dataclass
class _Line:
    type: IrqType = IrqType.NONE
    buffer: DescriptorChain | None = None
    latched: bool = False
    fd: int | None = None


class Interrupts:
    """One connection's eventq state; runs on the worker that owns both queues, so
    requests, buffers and edges never race."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self._lines = [_Line() for _ in range(chip.num_lines)]
        self._worker: Worker | None = None
        self._vring: Vring | None = None

    def attach(self, worker: Worker, eventq: Vring) -> None:
        self._worker = worker
        self._vring = eventq

    def type_of(self, line: int) -> IrqType:
        return self._lines[line].type

    def set_type(self, line: int, irq_type: IrqType) -> Status:
        """IRQ_TYPE: a type other than NONE must replace NONE (the spec's rule)."""
        state = self._lines[line]
        if irq_type is state.type:
            return Status.OK
        if irq_type is not IrqType.NONE and state.type is not IrqType.NONE:
            log.warning(
                "line %d: IRQ type %s over %s without NONE first",
                line,
                irq_type.name,
                state.type.name,
            )
            return Status.ERR
        self._unwatch(line)
        try:
            fd = self.chip.watch(line, _EDGES[irq_type])
        except LineError as exc:
            log.warning("line %d: %s", line, exc)
            return Status.ERR
        state.type, state.latched, state.fd = irq_type, False, fd
        if irq_type is IrqType.NONE:
            self._complete(line, IrqStatus.INVALID)  # the spec: hand the buffer back
        elif fd is not None and self._worker is not None:
            self._worker.add_reader(fd, lambda: self._edges(line))
        if irq_type.is_level:
            self._check_level(line)
        return Status.OK

    def _unwatch(self, line: int) -> None:
        fd = self._lines[line].fd
        if fd is not None and self._worker is not None:
            self._worker.remove_reader(fd)
        self._lines[line].fd = None

    def post(self, chain: DescriptorChain) -> None:
        """An eventq buffer: held for its line, or completed INVALID when it cannot be."""
        line = decode_irq_request(chain.read())
        if line is None or chain.writable_len < IRQ_RESPONSE_SIZE:
            log.warning("eventq buffer %d malformed: refused", chain.head)
            self._finish(chain, IrqStatus.INVALID)
            return
        if line >= len(self._lines):
            log.warning("eventq buffer for line %d of %d: refused", line, len(self._lines))
            self._finish(chain, IrqStatus.INVALID)
            return
        state = self._lines[line]
        if state.type is IrqType.NONE or state.buffer is not None:
            why = "no IRQ type" if state.buffer is None else "a buffer already waits"
            log.warning("eventq buffer for line %d (%s): refused", line, why)
            self._finish(chain, IrqStatus.INVALID)
            return
        state.buffer = chain
        if state.latched:
            state.latched = False
            self._complete(line, IrqStatus.VALID)
        elif state.type.is_level:
            self._check_level(line)

    def _check_level(self, line: int) -> None:
        state = self._lines[line]
        if state.buffer is None:
            return
        try:
            level = self.chip.value(line)
        except LineError as exc:
            log.warning("line %d: %s", line, exc)
            return
        if level == (1 if state.type is IrqType.LEVEL_HIGH else 0):
            self._complete(line, IrqStatus.VALID)

    def _edges(self, line: int) -> None:
        """The line's fd is readable: take its edges and interrupt if one counts."""
        state = self._lines[line]
        try:
            edges = self.chip.read_edges(line)
        except LineError as exc:
            log.warning("line %d: %s", line, exc)
            return
        if not edges or state.type is IrqType.NONE:
            return
        if state.type.is_level:
            self._check_level(line)
        elif any(state.type.fires_on(rising) for rising in edges):
            if state.buffer is None:
                state.latched = True
            else:
                self._complete(line, IrqStatus.VALID)

    def _complete(self, line: int, status: IrqStatus) -> None:
        state = self._lines[line]
        chain, state.buffer = state.buffer, None
        if chain is not None:
            self._finish(chain, status)

    def _finish(self, chain: DescriptorChain, status: IrqStatus) -> None:
        written = chain.write(bytes((status,))) if chain.writable_len else 0
        if self._vring is not None and self._vring.ready:
            self._vring.complete_one(chain.head, written)

    def return_all(self) -> None:
        """The eventq stops: hand back every held buffer while the ring still takes it."""
        for line in range(len(self._lines)):
            self._complete(line, IrqStatus.INVALID)

    def release(self) -> None:
        """The connection ends or the device resets: every line back to NONE, unwatched;
        held buffers die with the ring."""
        for line in range(len(self._lines)):
            self._unwatch(line)
        self._lines = [_Line() for _ in self._lines]
