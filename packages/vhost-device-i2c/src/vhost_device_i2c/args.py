"""Flags and the checked config they give; apart so `xtask manpages` can render them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user virtio-i2c device (ID 34): the guest's I2C transfers go to host adapters "
    "(/dev/i2c-N, plain I2C or SMBus through smbus2) or to the simulated bus `sim`"
)
MAX_ADDR = 127  # 7-bit addresses, as upstream


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-i2c", description=DESCRIPTION)
    add_socket_args(parser)
    parser.add_argument(
        "-l",
        "--device-list",
        required=True,
        metavar="LIST",
        help="the devices the guest may reach: <bus>:<addr>[:<addr>...][,<bus>:...]; a "
        "bus is an adapter number (/dev/i2c-N) or its sysfs name, or `sim` (simulated "
        "24c02-like EEPROMs) when no adapter has that name; addresses are decimal (or "
        "0x-hex), at most 127, each listed once",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-i2c")
    return parser


@dataclass(frozen=True)
class BusSpec:
    """One `<bus>:<addr>...` item: the bus as written and its addresses."""

    bus: str
    addresses: tuple[int, ...]


@dataclass(frozen=True)
class I2cConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    buses: tuple[BusSpec, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> I2cConfig:
        return cls(parse_device_list(args.device_list))


def parse_address(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise ConfigError(f"--device-list: {text!r} is not an address") from None
    if not 0 <= value <= MAX_ADDR:
        raise ConfigError(f"--device-list: address {text} is over {MAX_ADDR}")
    return value


def parse_device_list(text: str) -> tuple[BusSpec, ...]:
    """`<bus>:<addr>[:<addr>...],...` into bus specs; duplicates are errors."""
    specs: list[BusSpec] = []
    seen: dict[int, str] = {}
    for item in text.split(","):
        bus, *addresses = item.split(":")
        if not bus.strip() or not addresses:
            raise ConfigError(f"--device-list: {item!r} is not <bus>:<addr>[:<addr>...]")
        if any(spec.bus == bus for spec in specs):
            raise ConfigError(f"--device-list: bus {bus!r} is listed twice")
        parsed = tuple(parse_address(a) for a in addresses)
        for addr in parsed:
            if addr in seen:
                raise ConfigError(f"--device-list: address {addr} is listed twice")
            seen[addr] = bus
        specs.append(BusSpec(bus, parsed))
    return tuple(specs)
