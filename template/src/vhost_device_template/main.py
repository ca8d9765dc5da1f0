"""Entry point: flags → checked config → host sink → sockets → serve until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import LoopbackConfig, build_parser
from .device import LoopbackBackend
from .host import open_sink


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = LoopbackConfig.from_args(args)
    sink = open_sink(config)
    try:
        return run_daemon(lambda: LoopbackBackend(sink), open_listeners(args))
    finally:
        sink.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
