"""The requestq: one request, one answer, every bad request refused with the spec's
VIRTIO_GPIO_STATUS_ERR. IRQ types are the interrupt room's (`irq.Interrupts`)."""

from __future__ import annotations

import logging

from .errors import LineError
from .host import Chip
from .irq import Interrupts
from .protocol import Direction, IrqType, Msg, Request, Status, names_blob, response

log = logging.getLogger(__name__)

_DIRECTIONS = frozenset(int(d) for d in Direction)
_IRQ_TYPES = frozenset(int(t) for t in IrqType)


class Requests:
    """One connection's requestq answers; the chip does the work, `interrupts` keeps
    the IRQ types (a line with one stays an input)."""

    def __init__(self, chip: Chip, interrupts: Interrupts) -> None:
        self.chip = chip
        self.interrupts = interrupts
        self.names = names_blob(chip.line_names())

    def answer(self, data: bytes, room: int) -> bytes:
        """The response to the request bytes `data`, for a buffer of `room` bytes."""
        request = Request.decode(data)
        if request is None:
            log.warning("request of %d bytes, not %d: refused", len(data), 8)
            return response(Status.ERR)
        if request.type == Msg.GET_NAMES:
            if request.gpio != 0 or request.value != 0 or room < 1 + len(self.names):
                return response(Status.ERR)
            return bytes((Status.OK,)) + self.names
        if request.gpio >= self.chip.num_lines:
            log.warning(
                "request %d for line %d of %d: refused",
                request.type,
                request.gpio,
                self.chip.num_lines,
            )
            return response(Status.ERR)
        try:
            return self._line_request(request)
        except LineError as exc:
            log.warning("request %d: %s", request.type, exc)
            return response(Status.ERR)

    def _line_request(self, request: Request) -> bytes:
        line, value = request.gpio, request.value
        match request.type:
            case Msg.GET_DIRECTION if value == 0:
                return response(Status.OK, self.chip.direction(line))
            case Msg.SET_DIRECTION if value in _DIRECTIONS:
                direction = Direction(value)
                if (
                    direction is not Direction.IN
                    and self.interrupts.type_of(line) is not IrqType.NONE
                ):
                    return response(Status.ERR)  # interrupts need an input line
                self.chip.set_direction(line, direction)
                return response(Status.OK)
            case Msg.GET_VALUE if value == 0:
                return response(Status.OK, self.chip.value(line))
            case Msg.SET_VALUE if value in (0, 1):
                self.chip.set_value(line, value)
                return response(Status.OK)
            case Msg.IRQ_TYPE if value in _IRQ_TYPES:
                return response(self.interrupts.set_type(line, IrqType(value)))
        log.warning("request %d for line %d, value %d: refused", request.type, line, value)
        return response(Status.ERR)
