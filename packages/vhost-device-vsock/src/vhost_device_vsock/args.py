"""Command-line flags, the same as upstream's vhost-device-vsock (no --socket-fd there).

Three ways to describe the VMs, one per invocation: single-VM flags, repeated `--vm`, or
`--config FILE`. Flags default to None so `vm_configs` can tell "given" from "defaulted"
and refuse a mix; it applies the defaults itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from vhost_user_core import add_logging_args, add_version_arg

from .config import (
    DEFAULT_GROUPS,
    DEFAULT_GUEST_CID,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_TX_BUFFER_SIZE,
    MAX_GUEST_CID,
    MAX_QUEUE_SIZE,
    MAX_TX_BUFFER_SIZE,
    MIN_GUEST_CID,
    SEPARATOR,
    VMADDR_CID_ANY,
    VmConfig,
    check_backend,
    check_distinct,
    check_forward_cid,
    check_groups,
    check_guest_cid,
    check_path,
    check_ports,
    check_queue_size,
    check_tx_buffer_size,
    load_config_file,
    parse_vm,
)
from .errors import ConfigError

__all__ = [
    "ConfigError",
    "VmConfig",
    "build_parser",
    "load_config_file",
    "parse_vm",
    "vm_configs",
]

T = TypeVar("T")

DESCRIPTION = (
    "vhost-user virtio-vsock backend: hybrid vsock over Unix sockets, several VMs per process"
)

EPILOG = """\
Hybrid vsock (Firecracker's protocol): a guest connection to host CID 2, port P, is passed
to the Unix socket `<uds-path>_P`, where a host program must be listening. The other way
round, a host program connects to `<uds-path>`, writes `CONNECT <port>\\n`, reads
`OK <local port>\\n` once the guest has accepted, and from then on the socket carries
the stream both ways.

Siblings: the VMs of one process (several --vm, or a --config file) that share at least
one group can reach each other by guest CID; a connection to a VM without a
common group is refused (the guest gets a reset). A VM with --forward-cid instead
relays over the host's AF_VSOCK: guest connections go to that CID at the same port,
and --forward-listen ports are listened on for connections into the guest."""

#: The single-VM flags, by their argparse dest.
SINGLE_VM_FLAGS = (
    "guest_cid",
    "socket",
    "uds_path",
    "forward_cid",
    "forward_listen",
    "tx_buffer_size",
    "queue_size",
    "groups",
)


def _flag_type(check: Callable[[object], T]) -> Callable[[str], T]:
    """An argparse `type` that reports a ConfigError as a usage error."""

    def convert(text: str) -> T:
        try:
            return check(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhost-device-vsock", description=DESCRIPTION, epilog=EPILOG
    )
    single = parser.add_argument_group(
        "one VM",
        "Describe a single VM; --socket and one of --uds-path or --forward-cid are needed. "
        "These flags cannot be combined with --vm or --config.",
    )
    single.add_argument(
        "--guest-cid",
        metavar="CID",
        type=_flag_type(check_guest_cid),
        help=f"the guest's context ID, {MIN_GUEST_CID}..{MAX_GUEST_CID} "
        f"(default: {DEFAULT_GUEST_CID})",
    )
    single.add_argument(
        "--socket",
        metavar="PATH",
        type=_flag_type(check_path),
        help="vhost-user Unix socket the VMM (e.g. QEMU's vhost-user-vsock-pci) connects to",
    )
    single.add_argument(
        "--uds-path",
        metavar="PATH",
        type=_flag_type(check_path),
        help="hybrid backend: Unix socket that host programs connect to; guest connections "
        "to host port P go to PATH_P",
    )
    single.add_argument(
        "--forward-cid",
        metavar="CID",
        type=_flag_type(check_forward_cid),
        help="AF_VSOCK backend: forward the guest's connections to this CID "
        f"(0..{VMADDR_CID_ANY - 1}, e.g. 1 for loopback), keeping the port",
    )
    single.add_argument(
        "--forward-listen",
        metavar="PORTS",
        type=_flag_type(check_ports),
        help=f"AF_VSOCK backend: host vsock ports P1{SEPARATOR}P2... to listen on; "
        "connections to them are forwarded into the guest (needs --forward-cid)",
    )
    single.add_argument(
        "--tx-buffer-size",
        metavar="BYTES",
        type=_flag_type(check_tx_buffer_size),
        help="per-connection buffer for data from the guest, "
        f"1..{MAX_TX_BUFFER_SIZE} (default: {DEFAULT_TX_BUFFER_SIZE}); it is the guest's "
        "send window, so a bigger one (262144, say) speeds up bulk guest-to-host transfers",
    )
    single.add_argument(
        "--queue-size",
        metavar="N",
        type=_flag_type(check_queue_size),
        help=f"virtqueue size, a power of two up to {MAX_QUEUE_SIZE} "
        f"(default: {DEFAULT_QUEUE_SIZE})",
    )
    single.add_argument(
        "--groups",
        metavar="GROUPS",
        type=_flag_type(check_groups),
        help=f"sibling groups G1{SEPARATOR}G2... of this VM "
        f"(default: {SEPARATOR.join(DEFAULT_GROUPS)})",
    )
    several = parser.add_argument_group("several VMs")
    several.add_argument(
        "--vm",
        metavar="KEY=VALUE,...",
        action="append",
        help="one VM as comma-separated KEY=VALUE pairs; keys: guest-cid, socket (required), "
        "uds-path or forward-cid, forward-listen, tx-buffer-size, queue-size, groups "
        "(snake_case works too), with the defaults of the single-VM flags; e.g. "
        "guest-cid=4,socket=/tmp/vhost4.socket,uds-path=/tmp/vm4.vsock",
    )
    several.add_argument(
        "--config",
        metavar="FILE",
        help="read the VMs from a YAML file (a top-level vms: list of mappings with the "
        "keys of --vm in snake_case) or, if FILE ends in .toml, a TOML file of [[vms]] tables",
    )
    add_logging_args(parser)
    add_version_arg(parser, "vhost-device-vsock")
    return parser


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _single_vm(args: argparse.Namespace) -> VmConfig:
    if args.socket is None:
        raise ConfigError(
            "--socket is required (or describe the VMs with --vm or --config); "
            "see vhost-device-vsock --help"
        )
    # Before VmConfig checks the same, to name the flags as they were typed.
    check_backend(args.uds_path, args.forward_cid, args.forward_listen, _flag)

    def value(name: str, default: T) -> T:
        given: T | None = getattr(args, name)
        return default if given is None else given

    return VmConfig(
        guest_cid=value("guest_cid", DEFAULT_GUEST_CID),
        socket=args.socket,
        uds_path=args.uds_path,
        forward_cid=args.forward_cid,
        forward_listen=value("forward_listen", ()),
        tx_buffer_size=value("tx_buffer_size", DEFAULT_TX_BUFFER_SIZE),
        queue_size=value("queue_size", DEFAULT_QUEUE_SIZE),
        groups=value("groups", DEFAULT_GROUPS),
    )


def vm_configs(args: argparse.Namespace) -> list[VmConfig]:
    """The VMs to serve, from whichever style the command line used.

    Raises ConfigError (a VhostUserError) with a one-line message on a mix of styles, a bad
    `--vm` or config file, or VMs that clash (CID, socket path, listen port)."""
    given = [_flag(dest) for dest in SINGLE_VM_FLAGS if getattr(args, dest, None) is not None]
    vm_texts: list[str] = getattr(args, "vm", None) or []
    config: str | None = getattr(args, "config", None)
    if vm_texts and config is not None:
        raise ConfigError("--vm cannot be combined with --config")
    style = "--vm" if vm_texts else "--config" if config is not None else None
    if style is not None and given:
        raise ConfigError(
            f"{style} cannot be combined with {', '.join(given)}: "
            f"put {'those settings' if len(given) > 1 else 'that setting'} in the VM description"
        )
    if vm_texts:
        vms = [parse_vm(text) for text in vm_texts]
        try:
            check_distinct(vms)
        except ConfigError as exc:
            raise ConfigError(f"--vm: {exc}") from None
        return vms
    if config is not None:
        return load_config_file(config)  # checks distinctness itself
    return [_single_vm(args)]
