"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user virtio-input device (ID 18): host evdev devices (/dev/input/eventN, "
    "through python-evdev) or simulated ones (sim:keyboard, sim:mouse, sim:tablet) "
    "passed to the guest, one device per socket"
)
SIM_KINDS = ("keyboard", "mouse", "tablet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-input", description=DESCRIPTION)
    add_socket_args(parser, count=False, fd=False)
    parser.add_argument(
        "-e",
        "--event-list",
        required=True,
        metavar="LIST",
        help="comma-separated input devices; socket PATH<i> serves the i-th: an evdev "
        "node (/dev/input/eventN) or sim:keyboard, sim:mouse, sim:tablet, fed with lines "
        "`<TYPE> <CODE> <VALUE>` through the Unix socket PATH<i>.events",
    )
    parser.add_argument(
        "--grab",
        action="store_true",
        help="grab the host devices (EVIOCGRAB) so the host stops seeing their events",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-input")
    return parser


@dataclass(frozen=True)
class InputConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    devices: tuple[str, ...]
    sockets: tuple[str, ...]
    grab: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InputConfig:
        devices = parse_event_list(args.event_list)
        return cls(devices, tuple(f"{args.socket_path}{i}" for i in range(len(devices))), args.grab)


def parse_event_list(text: str) -> tuple[str, ...]:
    """Comma-separated device names: none empty, none twice, sim kinds known."""
    items = tuple(item.strip() for item in text.split(","))
    for item in items:
        if not item:
            raise ConfigError(f"--event-list: {text!r} has an empty item")
        if item.startswith("sim:") and item[4:] not in SIM_KINDS:
            kinds = ", ".join(f"sim:{k}" for k in SIM_KINDS)
            raise ConfigError(f"--event-list: {item!r} is not one of {kinds}")
        if items.count(item) > 1 and not item.startswith("sim:"):
            raise ConfigError(f"--event-list: {item!r} is listed twice")
    return items
