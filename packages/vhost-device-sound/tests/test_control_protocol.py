"""The control socket's grammar, without a socket."""

from __future__ import annotations

import pytest

from vhost_device_sound.control_protocol import (
    Query,
    SetSwitch,
    format_state,
    parse,
)
from vhost_device_sound.errors import CommandError
from vhost_device_sound.protocol import Direction


@pytest.mark.parametrize(
    "line, command",
    [
        ("QUERY", Query()),
        ("query", Query()),
        ("  QUERY  ", Query()),
        ("SET output on", SetSwitch(Direction.OUTPUT, True)),
        ("SET input off", SetSwitch(Direction.INPUT, False)),
        ("set INPUT On", SetSwitch(Direction.INPUT, True)),
        ("SET\toutput\toff", SetSwitch(Direction.OUTPUT, False)),
    ],
)
def test_commands(line: str, command: object) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    "line, message",
    [
        ("", "empty command"),
        ("   ", "empty command"),
        ("QUERY now", "takes no arguments"),
        ("SET output", "usage"),
        ("SET output on please", "usage"),
        ("SET speaker on", "unknown direction"),
        ("SET output maybe", "unknown state"),
        ("ENABLE output", "unknown command"),
        ("\x00\xff", "unknown command"),
    ],
)
def test_errors(line: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse(line)


def test_state_line() -> None:
    assert format_state({Direction.OUTPUT: True, Direction.INPUT: False}) == "output on input off"
