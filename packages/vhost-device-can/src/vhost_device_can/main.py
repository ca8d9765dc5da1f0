"""Entry point: flags → checked config → one bus per socket → serve until SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Callable

from vhost_user_core import Daemon, main_guard, open_listeners, run_all, setup_logging

from .args import CanConfig, build_parser
from .device import CanBackend
from .host import Bus, open_bus


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = CanConfig.from_args(args)
    buses: list[Bus] = []
    try:
        for device in config.devices:  # a missing interface fails before any socket
            buses.append(open_bus(device))
        listeners = open_listeners(args)
        pairs = zip(buses, listeners, strict=True)
        run_all([Daemon(_factory(bus), [listener]) for bus, listener in pairs])
        return 0
    finally:
        for bus in buses:
            bus.close()


def _factory(bus: Bus) -> Callable[[], CanBackend]:
    return lambda: CanBackend(bus)


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
