"""Flags live in their own module so `xtask manpages` can render them without running."""

from __future__ import annotations

import argparse

from vhost_user_core.cli import add_logging_args, add_socket_args, add_version_arg

DESCRIPTION = "vhost-user loopback device: every request's output buffers get its input bytes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-template", description=DESCRIPTION)
    add_socket_args(parser)
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-template")
    return parser
