"""Entry point: flags → checked config → buses → sockets → serve until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import I2cConfig, build_parser
from .device import I2cBackend
from .host import open_buses


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    buses = open_buses(I2cConfig.from_args(args))
    try:
        return run_daemon(lambda: I2cBackend(buses), open_listeners(args))
    finally:
        buses.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
