"""Entry point: flags → checked config → controllers (probed) → sockets → serve."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from functools import partial

from vhost_user_core import Daemon, main_guard, open_listeners, run_all, setup_logging

from .args import SpiDaemonConfig, build_parser
from .device import SpiBackend
from .host import Controller, open_controller


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = SpiDaemonConfig.from_args(args)
    with ExitStack() as cleanup:
        controllers: dict[str, Controller] = {}
        for device in dict.fromkeys(config.devices):  # a device named twice is opened once
            controllers[device] = open_controller(device)
            cleanup.callback(controllers[device].close)
        listeners = open_listeners(args)
        for listener in listeners:
            cleanup.callback(listener.close)
        daemons = [
            Daemon(partial(SpiBackend, controllers[device]), [listener])
            for device, listener in zip(config.devices, listeners, strict=True)
        ]
        run_all(daemons)
    return 0


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
