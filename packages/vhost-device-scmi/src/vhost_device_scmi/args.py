"""Flags and the checked device list they give; apart so `xtask manpages` can render
them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .errors import ConfigError

DESCRIPTION = (
    "vhost-user SCMI device: the Arm SCMI base and sensor management protocols over "
    "virtio-scmi, with sensors from a fake accelerometer or the host's IIO devices"
)

# kind → (property → (required, what it is)): the catalogue --help-devices prints.
KINDS: dict[str, tuple[str, dict[str, tuple[bool, str]]]] = {
    "fake": (
        "a three-axis accelerometer with preset values, updates every second",
        {"name": (False, "the sensor's name, at most 15 bytes (default: fake-accel)")},
    ),
    "iio": (
        "a channel of an Industrial I/O device from sysfs",
        {
            "path": (True, "the device's sysfs directory, e.g. /sys/bus/iio/devices/iio:device0"),
            "channel": (True, "the channel prefix, e.g. in_accel, in_temp, in_voltage0"),
            "name": (False, "the sensor's name, at most 15 bytes (default: the device's)"),
            "dev": (
                False,
                "its buffer's character device, for notifications (default: /dev/<path's name>)",
            ),
        },
    ),
}


def catalogue() -> str:
    lines = ["Available devices (-d KIND,PROPERTY=VALUE,...):", ""]
    for kind, (what, props) in KINDS.items():
        lines.append(f"- {kind}: {what}")
        for prop, (required, help_) in props.items():
            lines.append(f"    {prop}{' (required)' if required else ''}: {help_}")
        lines.append("")
    lines.append(
        "Example: -d fake,name=accel0 -d iio,path=/sys/bus/iio/devices/iio:device0,channel=in_accel"
    )
    return "\n".join(lines)


class _HelpDevices(argparse.Action):
    """Prints the catalogue and exits, before the required socket is asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(catalogue())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vhost-device-scmi", description=DESCRIPTION)
    add_socket_args(parser, count=False)
    parser.add_argument(
        "-d",
        "--device",
        action="append",
        default=[],
        metavar="KIND,PROP=VAL,...",
        help="a sensor to offer (repeatable, sensor ids in this order); see --help-devices",
    )
    parser.add_argument(
        "--help-devices", action=_HelpDevices, help="list the device kinds and their properties"
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-scmi")
    return parser


@dataclass(frozen=True)
class DeviceSpec:
    """One -d: its kind and checked properties."""

    kind: str
    props: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> DeviceSpec:
        kind, *items = text.split(",")
        if kind not in KINDS:
            raise ConfigError(f"-d {text}: unknown device kind {kind!r} (see --help-devices)")
        known = KINDS[kind][1]
        props: dict[str, str] = {}
        for item in items:
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ConfigError(f"-d {text}: {item!r} is not PROPERTY=VALUE")
            if key not in known:
                raise ConfigError(f"-d {text}: {kind} has no property {key!r} (see --help-devices)")
            if key in props:
                raise ConfigError(f"-d {text}: {key} given twice")
            props[key] = value
        missing = [p for p, (required, _) in known.items() if required and p not in props]
        if missing:
            raise ConfigError(f"-d {text}: {kind} needs {', '.join(missing)}")
        name = props.get("name")
        if name is not None and not 0 < len(name.encode()) <= 15:
            raise ConfigError(f"-d {text}: name must be 1 to 15 bytes")
        return cls(kind, props)


@dataclass(frozen=True)
class ScmiConfig:
    """What the device needs from the flags, checked before any socket is opened."""

    devices: tuple[DeviceSpec, ...]

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ScmiConfig:
        return cls(tuple(DeviceSpec.parse(text) for text in args.device))
