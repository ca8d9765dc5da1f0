"""Entry point of the `vhost-device-rng` command."""

from __future__ import annotations

import sys

from vhost_user_core import main_guard, open_listeners, run_daemon, setup_logging

from .args import RngConfig, build_parser
from .device import RngBackend
from .ratelimit import TokenBucket
from .source import EntropySource


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    config = RngConfig.from_args(args)
    source = EntropySource(config.rng_source)
    bucket = TokenBucket(config.max_bytes, config.period_ms / 1000)
    listeners = open_listeners(args)
    try:
        return run_daemon(lambda: RngBackend(source, bucket), listeners)
    finally:
        source.close()


def main() -> int:
    return main_guard(lambda: run(sys.argv[1:]))()


if __name__ == "__main__":
    sys.exit(main())
