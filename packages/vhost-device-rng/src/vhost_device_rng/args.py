"""Command-line flags, the same as upstream's vhost-device-rng (and --socket-fd)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, positive_int

from .ratelimit import UNLIMITED

#: Upstream's limits: the period is a u16-sized number of milliseconds.
MAX_PERIOD_MS = 1 << 16

DESCRIPTION = "vhost-user virtio-rng backend: serves entropy from a host file to guests"


def period_ms(text: str) -> int:
    value = positive_int(text)
    if value > MAX_PERIOD_MS:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than {MAX_PERIOD_MS} ms")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhost-device-rng",
        description=DESCRIPTION,
        epilog="Rate limiting: at most MAX-BYTES are served per PERIOD milliseconds, "
        "shared by all sockets; a rate-limited request waits for the next period "
        "(the worker thread is not blocked meanwhile).",
    )
    add_socket_args(parser)
    parser.add_argument(
        "-f",
        "--rng-source",
        metavar="PATH",
        default="/dev/urandom",
        help="file to read entropy from (default: %(default)s)",
    )
    parser.add_argument(
        "-p",
        "--period",
        metavar="MS",
        type=period_ms,
        default=MAX_PERIOD_MS,
        help=f"rate-limit period in milliseconds, 1..{MAX_PERIOD_MS} (default: %(default)s)",
    )
    parser.add_argument(
        "-m",
        "--max-bytes",
        metavar="BYTES",
        type=positive_int,
        default=UNLIMITED,
        help="bytes served per period, all sockets together (default: unlimited)",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-rng")
    return parser


@dataclass(frozen=True)
class RngConfig:
    rng_source: str
    period_ms: int
    max_bytes: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RngConfig:
        return cls(args.rng_source, args.period, args.max_bytes)
