"""Entry point: flags → checked config → chips → mock control → one daemon per socket."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack

from vhost_user_core import Daemon, main_guard, open_listeners, run_all, setup_logging

from .args import GpioConfig, build_parser
from .device import GpioBackend
from .host import Chip, open_chip
from .mockctl import MockControl


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = GpioConfig.from_args(args)
    with ExitStack() as stack:
        chips: list[Chip] = []
        for index, spec in enumerate(config.chips):
            chip = open_chip(spec.host, spec.mock_lines, index)
            stack.callback(chip.close)
            chips.append(chip)
        if config.mock_control is not None:
            control = MockControl(config.mock_control, chips)
            stack.callback(control.close)
            control.start()
        listeners = open_listeners(args)
        # Chip i serves socket i, like upstream: one daemon (and backend factory) each.
        run_all(
            [
                Daemon(_factory(chip), [listener])
                for chip, listener in zip(chips, listeners, strict=True)
            ]
        )
    return 0


def _factory(chip: Chip) -> Callable[[], GpioBackend]:
    return lambda: GpioBackend(chip)


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
