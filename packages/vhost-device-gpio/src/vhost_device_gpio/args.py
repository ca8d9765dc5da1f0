"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, served_sockets

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user GPIO device: one GPIO chip per guest socket, a host /dev/gpiochipN "
    "(libgpiod v2) or a mock chip with N lines (sN)"
)
MAX_LINES = 1024  # a mock chip's limit; ngpio is a u16, but nobody needs more


@dataclass(frozen=True)
class ChipSpec:
    """One entry of --device-list: a host chip number, or a mock chip's line count."""

    host: int | None = None
    mock_lines: int | None = None

    @classmethod
    def parse(cls, text: str) -> ChipSpec:
        if text.startswith("s"):
            count = text[1:]
            if not count.isdigit() or not 1 <= int(count) <= MAX_LINES:
                raise ConfigError(f"mock chip {text!r}: sN needs N lines, 1..{MAX_LINES}")
            return cls(mock_lines=int(count))
        if not text.isdigit():
            raise ConfigError(f"device {text!r}: expected N (/dev/gpiochipN) or sN (mock)")
        return cls(host=int(text))

    def __str__(self) -> str:
        return f"s{self.mock_lines}" if self.mock_lines is not None else str(self.host)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-gpio", description=DESCRIPTION)
    add_socket_args(parser)
    parser.add_argument(
        "-l",
        "--device-list",
        required=True,
        metavar="N[:M...]",
        help="one chip per socket, in socket order: N is /dev/gpiochipN, sN a mock chip "
        "with N lines named gpio0.. (the shipped double)",
    )
    parser.add_argument(
        "--mock-control",
        type=Path,
        metavar="PATH",
        help="Unix socket taking lines 'SET <chip-index> <line> <0|1>' that drive a mock "
        "chip's input level (answers OK or one line of error)",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-gpio")
    return parser


@dataclass(frozen=True)
class GpioConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    chips: tuple[ChipSpec, ...]
    mock_control: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> GpioConfig:
        entries = args.device_list.split(":")
        chips = tuple(ChipSpec.parse(entry) for entry in entries)
        hosts = [chip.host for chip in chips if chip.host is not None]
        if len(set(hosts)) != len(hosts):
            raise ConfigError(f"--device-list {args.device_list}: a host chip is listed twice")
        count = served_sockets(args)
        if len(chips) != count:
            raise ConfigError(
                f"--device-list has {len(chips)} chip(s) but --socket-count is {count}: "
                "exactly one chip per socket"
            )
        if args.mock_control is not None and all(chip.mock_lines is None for chip in chips):
            raise ConfigError("--mock-control drives mock chips (sN); --device-list has none")
        return cls(chips, args.mock_control)
