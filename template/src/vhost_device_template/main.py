"""Entry point: parse flags, open the sockets, serve until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core.cli import main_guard, open_listeners, run_daemon, setup_logging

from .args import build_parser
from .device import LoopbackBackend


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return run_daemon(LoopbackBackend, open_listeners(args))


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
