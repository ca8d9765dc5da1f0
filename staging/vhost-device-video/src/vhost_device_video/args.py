"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

DESCRIPTION = (
    "vhost-user virtio-video decoder (the v3 draft, device ID 31): guest streams "
    "decoded by a V4L2 stateful mem2mem decoder, or by the null backend"
)
BACKENDS = ("null", "v4l2-decoder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-video", description=DESCRIPTION)
    add_socket_args(parser, count=False)
    parser.add_argument(
        "-d",
        "--v4l2-device",
        type=Path,
        default=Path("/dev/video0"),
        metavar="PATH",
        help="the V4L2 stateful decoder for --backend v4l2-decoder (default: %(default)s)",
    )
    parser.add_argument(
        "-b",
        "--backend",
        choices=BACKENDS,
        required=True,
        help="null (accepts any stream, returns empty frames) or v4l2-decoder",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-video")
    return parser


@dataclass(frozen=True)
class VideoConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    backend: str
    v4l2_device: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VideoConfig:
        return cls(args.backend, args.v4l2_device)
