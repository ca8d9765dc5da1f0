"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, positive_int

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user SCSI device backend: raw images (files, block devices, or mem:SIZE "
    "in-memory doubles) as the LUNs of one emulated target"
)
MAX_IMAGES = 256
#: Request queues a vhost-user device can have (256 rings, two of them fixed).
MAX_REQUEST_QUEUES = 254
DEFAULT_REQUEST_QUEUES = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-scsi", description=DESCRIPTION)
    add_socket_args(parser, count=False)
    parser.add_argument(
        "-r",
        "--read-only",
        action="store_true",
        help="open the images read-only; the LUNs report write protect and refuse writes",
    )
    parser.add_argument(
        "--solid-state",
        action="store_true",
        help="report a non-rotational medium (Block Device Characteristics VPD page)",
    )
    parser.add_argument(
        "--num-queues",
        type=positive_int,
        default=DEFAULT_REQUEST_QUEUES,
        metavar="N",
        help="request queues offered (QEMU uses as many as its num_queues, by default "
        f"one per vCPU; 1..{MAX_REQUEST_QUEUES}, default: %(default)s)",
    )
    parser.add_argument(
        "--io-threads",
        type=positive_int,
        default=4,
        metavar="N",
        help="threads doing image I/O per connection (default: %(default)s)",
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"raw image file or block device, or mem:SIZE (e.g. mem:64M) for a "
        f"zero-filled in-memory image; one LUN each, LUN 0 first (up to {MAX_IMAGES})",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-scsi")
    return parser


@dataclass(frozen=True)
class ScsiConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    images: tuple[str, ...]
    read_only: bool = False
    solid_state: bool = False
    num_queues: int = DEFAULT_REQUEST_QUEUES
    io_threads: int = 4

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ScsiConfig:
        if len(args.images) > MAX_IMAGES:
            raise ConfigError(f"{len(args.images)} images; at most {MAX_IMAGES} LUNs are served")
        if args.num_queues > MAX_REQUEST_QUEUES:
            raise ConfigError(f"--num-queues {args.num_queues}: at most {MAX_REQUEST_QUEUES}")
        return cls(
            tuple(args.images), args.read_only, args.solid_state, args.num_queues, args.io_threads
        )
