"""Shared command-line pieces, so every device spells the common flags the same way."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from collections.abc import Callable

from .daemon import BackendFactory, Daemon, Listener
from .errors import VhostUserError

log = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def add_socket_args(
    parser: argparse.ArgumentParser,
    *,
    count: bool = True,
    fd: bool = True,
    path_flags: tuple[str, ...] = ("-s", "--socket-path"),
) -> None:
    """`-s/--socket-path` (or the device's own spelling, e.g. sound's `--socket`),
    optionally `-c/--socket-count` and `--socket-fd`."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        *path_flags,
        dest="socket_path",
        metavar="PATH",
        help="vhost-user Unix socket to listen on"
        + ("; with --socket-count N > 1, sockets PATH0 .. PATH<N-1>" if count else ""),
    )
    if fd:
        group.add_argument(
            "--socket-fd",
            metavar="FD",
            type=int,
            help="an already listening Unix socket fd (systemd socket activation)",
        )
    if count:
        parser.add_argument(
            "-c",
            "--socket-count",
            metavar="N",
            type=positive_int,
            default=1,
            help="number of guests (sockets) to serve (default: %(default)s)",
        )


def add_version_arg(parser: argparse.ArgumentParser, distribution: str) -> None:
    """`-V/--version` (upstream's clap spelling), printing the installed distribution's
    version: pyproject.toml is the one place a version is written."""
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version(distribution)}",
    )


def add_logging_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=os.environ.get("VHOST_LOG", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: $VHOST_LOG or %(default)s)",
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def served_sockets(args: argparse.Namespace) -> int:
    """How many guests `add_socket_args` flags serve: one with --socket-fd, else
    --socket-count; a device with one host resource per socket checks its list
    against this before any socket is opened."""
    if getattr(args, "socket_fd", None) is not None:
        return 1
    return int(getattr(args, "socket_count", 1))


def socket_paths(path: str, count: int) -> list[str]:
    """Upstream's naming: PATH0 .. PATH<count-1>, even for a single socket."""
    return [f"{path}{i}" for i in range(count)]


def open_listeners(args: argparse.Namespace, *, suffix: bool = True) -> list[Listener]:
    """Listeners for `add_socket_args` flags; `suffix` appends 0..N-1 like upstream."""
    if getattr(args, "socket_fd", None) is not None:
        if getattr(args, "socket_count", 1) != 1:
            raise VhostUserError("--socket-fd serves one guest; drop --socket-count")
        return [Listener.from_fd(args.socket_fd)]
    count = served_sockets(args)
    paths = socket_paths(args.socket_path, count) if suffix else [args.socket_path]
    listeners: list[Listener] = []
    try:
        for path in paths:
            listeners.append(Listener.bind(path))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def run_daemon(factory: BackendFactory, listeners: list[Listener]) -> int:
    """Serve every listener until SIGTERM/SIGINT; returns the process exit status."""
    Daemon(factory, listeners).run()
    return 0


def main_guard(main: Callable[[], int]) -> Callable[[], int]:
    """Turn a VhostUserError into one clear line on stderr and exit status 1."""

    def wrapped() -> int:
        try:
            return main()
        except VhostUserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapped
