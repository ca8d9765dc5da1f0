"""Entry point: flags → checked config → devices → one socket per device → serve
until SIGTERM."""

from __future__ import annotations

import sys

from vhost_user_core import Daemon, Listener, main_guard, run_all, setup_logging

from .args import InputConfig, build_parser
from .device import InputBackend
from .host import InputDevice, open_devices


def _daemon(device: InputDevice, listener: Listener) -> Daemon:
    return Daemon(lambda: InputBackend(device), [listener])


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = InputConfig.from_args(args)
    devices = open_devices(config)
    listeners: list[Listener] = []
    try:
        listeners = [Listener.bind(path) for path in config.sockets]
        run_all([_daemon(d, lst) for d, lst in zip(devices, listeners, strict=True)])
        return 0
    finally:
        for listener in listeners:
            listener.close()
        for device in devices:
            device.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
