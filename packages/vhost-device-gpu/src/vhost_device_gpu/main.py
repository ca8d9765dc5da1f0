"""Entry point: flags → checked config → socket → serve until SIGTERM, a fresh device
(renderer, scanouts, display channel) for every VMM connection."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import GpuConfig, build_parser
from .device import GpuBackend


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = GpuConfig.from_args(args)
    if config.mode == "virglrenderer":
        from .renderer.virgl import probe

        probe(config.virgl)  # flags the host cannot serve fail here, in one line
    return run_daemon(lambda: GpuBackend(config), open_listeners(args, suffix=False))


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
