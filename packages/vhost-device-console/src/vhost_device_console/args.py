"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, positive_int

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user console device (virtio-console with MULTIPORT): the guest's hvc0 on this "
    "terminal (nested), on a TCP port per guest (network) or on a pseudo-terminal (pty)"
)
EPILOG = (
    "nested: the terminal is put in raw mode and every key, Ctrl-C included, goes to the "
    "guest; press Ctrl-] then q to leave (Ctrl-] twice sends one Ctrl-]). network: socket i "
    "listens on 127.0.0.1:PORT+i, one client at a time; a second one is told so and closed. "
    "Guest output while no client is connected is kept up to 64 KiB (the newest bytes)."
)
BACKENDS = ("nested", "network", "pty")


def _port(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0..65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhost-device-console", description=DESCRIPTION, epilog=EPILOG
    )
    add_socket_args(parser)
    parser.add_argument(
        "-b",
        "--backend",
        choices=BACKENDS,
        default="nested",
        help="where the guest's console goes: this terminal (nested, one socket only), "
        "TCP (network) or a new pseudo-terminal per socket whose path is printed (pty) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "-p",
        "--tcp-port",
        type=_port,
        default=12345,
        metavar="PORT",
        help="network: socket i listens on 127.0.0.1:PORT+i (default: %(default)s)",
    )
    parser.add_argument(
        "-q",
        "--max-queue-size",
        type=positive_int,
        default=128,
        metavar="N",
        help="largest ring the VMM may set up, a power of two up to 32768 (default: %(default)s)",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-console")
    return parser


@dataclass(frozen=True)
class ConsoleConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    backend: str
    socket_count: int
    tcp_port: int
    max_queue_size: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConsoleConfig:
        size = args.max_queue_size
        if size > 32768 or size & (size - 1):
            raise ConfigError(f"--max-queue-size {size} is not a power of two in 1..32768")
        count = args.socket_count
        if args.backend == "nested" and count != 1:
            raise ConfigError("the nested backend has one terminal: use --socket-count 1")
        if args.backend == "network" and args.tcp_port + count - 1 > 65535:
            raise ConfigError(
                f"--tcp-port {args.tcp_port} with {count} sockets goes beyond port 65535"
            )
        if args.backend == "network" and args.tcp_port == 0 and count != 1:
            raise ConfigError("--tcp-port 0 (any free port) serves one socket only")
        return cls(args.backend, count, args.tcp_port, size)
