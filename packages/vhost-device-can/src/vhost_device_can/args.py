"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, served_sockets

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user virtio-can device: each socket's guest gets a CAN controller on one "
    "host CAN interface (SocketCAN), or on an in-process virtual bus"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-can", description=DESCRIPTION)
    add_socket_args(parser)
    parser.add_argument(
        "-d",
        "--can-devices",
        required=True,
        metavar="DEVICES",
        help='space-separated CAN interfaces, one per socket (e.g. "vcan0 can1"); '
        "virtual:NAME is python-can's in-process bus NAME, shared by the sockets naming it",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-can")
    return parser


@dataclass(frozen=True)
class CanConfig:
    """The bus of each socket, in socket order, checked before any socket is opened."""

    devices: tuple[str, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CanConfig:
        devices = tuple(args.can_devices.split())
        count = served_sockets(args)
        if len(devices) != count:
            raise ConfigError(
                f"--can-devices names {len(devices)} interface(s) for {count} socket(s)"
            )
        for device in devices:
            if device.startswith("virtual:"):
                if not device.removeprefix("virtual:"):
                    raise ConfigError("virtual: needs a bus name (virtual:NAME)")
            elif device in (".", "..") or "/" in device or len(device) > 15:
                raise ConfigError(f"{device!r} is not a network interface name")
        return cls(devices)
