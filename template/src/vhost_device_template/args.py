"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user loopback device: every request's output buffers get its input bytes, "
    "and the host's sink a copy"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-template", description=DESCRIPTION)
    add_socket_args(parser)
    parser.add_argument(
        "--sink",
        choices=["memory", "file"],
        default="memory",
        help="where the host keeps the guest's bytes: memory (the newest MiB; the "
        "shipped double) or file (--output) (default: %(default)s)",
    )
    parser.add_argument("-o", "--output", type=Path, metavar="PATH", help="file for --sink file")
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-template")
    return parser


@dataclass(frozen=True)
class LoopbackConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    sink: str
    output: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoopbackConfig:
        if (args.sink == "file") != (args.output is not None):
            raise ConfigError("--output PATH goes with --sink file, and only with it")
        return cls(args.sink, args.output)
