"""Entry point: flags → checked config → host backend (a V4L2 device opened and checked
once) → the socket → serve until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import VideoConfig, build_parser
from .device import VideoBackend
from .host import open_backend


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = VideoConfig.from_args(args)
    host = open_backend(config)
    try:
        return run_daemon(lambda: VideoBackend(host), open_listeners(args, suffix=False))
    finally:
        host.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
