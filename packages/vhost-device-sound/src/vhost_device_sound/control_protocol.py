"""The control socket's line protocol, as pure parsing and formatting (no I/O).

    QUERY                      -> "output on input off"
    SET <output|input> <on|off> -> "OK"
    anything else              -> "ERROR <why>"

Keywords are case-insensitive; answers use the lower-case forms above. One command per
line; a line is at most MAX_LINE bytes without its newline.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CommandError
from .protocol import Direction

MAX_LINE = 256


@dataclass(frozen=True)
class Query:
    pass


@dataclass(frozen=True)
class SetSwitch:
    direction: Direction
    enabled: bool


Command = Query | SetSwitch

_STATES = {"on": True, "off": False}


def parse(line: str) -> Command:
    words = line.split()
    if not words:
        raise CommandError("empty command (expected QUERY or SET <output|input> <on|off>)")
    verb = words[0].upper()
    if verb == "QUERY":
        if len(words) != 1:
            raise CommandError("QUERY takes no arguments")
        return Query()
    if verb == "SET":
        if len(words) != 3:
            raise CommandError("usage: SET <output|input> <on|off>")
        try:
            direction = Direction[words[1].upper()]
        except KeyError:
            raise CommandError(f"unknown direction {words[1]!r} (output or input)") from None
        state = _STATES.get(words[2].lower())
        if state is None:
            raise CommandError(f"unknown state {words[2]!r} (on or off)")
        return SetSwitch(direction, state)
    raise CommandError(f"unknown command {words[0]!r} (QUERY or SET)")


def format_state(enabled: dict[Direction, bool]) -> str:
    """The QUERY answer: both directions, output first."""
    return " ".join(f"{d.label} {'on' if enabled[d] else 'off'}" for d in Direction)


def format_error(message: str) -> str:
    return f"ERROR {message}"
