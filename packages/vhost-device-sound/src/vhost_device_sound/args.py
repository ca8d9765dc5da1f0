"""Command-line flags: upstream's (--socket, --socket-fd, --backend) plus the switches."""

from __future__ import annotations

import argparse

from vhost_user_core import add_logging_args, add_socket_args, add_version_arg

from .backends import BACKENDS
from .protocol import Direction
from .switches import DEFAULT_INITIAL_STREAMS, parse_initial_streams

DESCRIPTION = (
    "vhost-user virtio-snd backend: one output and one input stream, each with an "
    "enable switch that a control socket can flip while the guest runs"
)

EPILOG = """\
Control socket: one command per line, one answer line each; several clients may be
connected at once. "QUERY" answers "output on|off input on|off". "SET output on",
"SET input off" (any direction, on or off) change one switch and answer "OK". Anything
else is answered by a line starting with "ERROR" and the connection stays open. A
disabled output still completes the guest's buffers in real time but discards them; a
disabled input delivers silence in real time: no host audio reaches the guest."""


def initial_streams(text: str) -> frozenset[Direction]:
    try:
        return parse_initial_streams(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhost-device-sound", description=DESCRIPTION, epilog=EPILOG
    )
    add_socket_args(parser, count=False, path_flags=("--socket",))
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default="null",
        help="where audio goes and comes from (default: %(default)s)",
    )
    parser.add_argument(
        "--alsa-device",
        metavar="PCM",
        default="default",
        help="ALSA PCM used by --backend alsa for both streams (default: %(default)s; "
        "`aplay -L` lists the names)",
    )
    parser.add_argument(
        "--initial-streams",
        metavar="LIST",
        type=initial_streams,
        default=parse_initial_streams(DEFAULT_INITIAL_STREAMS),
        help="directions enabled at start: output, input, output,input or none "
        f"(default: {DEFAULT_INITIAL_STREAMS}; input stays off until enabled)",
    )
    parser.add_argument(
        "--control-socket",
        metavar="PATH",
        help="Unix socket (mode 0600) taking QUERY and SET <output|input> <on|off> lines",
    )
    parser.add_argument(
        "--controls",
        action="store_true",
        help="offer VIRTIO 1.3 control elements (master volume and mute); QEMU needs "
        "vhost-user-snd-pci,controls=on to expose them",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-sound")
    return parser
