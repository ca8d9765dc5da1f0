"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg, served_sockets

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user virtio-spi device: a guest's SPI transfers on a host /dev/spidevX.Y, or "
    "on a simulated controller whose MOSI is looped to MISO"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-spi", description=DESCRIPTION)
    add_socket_args(parser)
    parser.add_argument(
        "-l",
        "--device",
        action="append",
        required=True,
        metavar="DEVICE",
        help="SPI controller: a /dev/spidevX.Y path, or 'sim' for the simulated loopback "
        "controller; once for all sockets, or once per socket in socket order",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-spi")
    return parser


@dataclass(frozen=True)
class SpiDaemonConfig:
    """One controller per socket, checked before any socket is opened."""

    devices: tuple[str, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SpiDaemonConfig:
        count = served_sockets(args)
        devices = [d.strip() for d in args.device]
        if any(not d for d in devices):
            raise ConfigError("--device: an empty device name")
        if len(devices) == 1:
            return cls(tuple(devices * count))
        if len(devices) != count:
            raise ConfigError(
                f"{len(devices)} --device flags for {count} sockets: give one for all, "
                "or one per socket"
            )
        real = [d for d in devices if d != "sim"]
        if len(set(real)) != len(real):
            raise ConfigError("--device: the same spidev for two sockets; give it once for all")
        return cls(tuple(devices))
