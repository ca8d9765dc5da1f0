"""One `VmConfig` per guest, built from a `--vm key=value,...` string or a YAML/TOML file.

Upstream accepts the same keys in all three places (flags, `--vm`, `--config`); this module
holds the one set of rules so every style rejects the same mistakes with the same words.
Every error is a `ConfigError` (see `errors`), a `VhostUserError` whose message is one line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

#: Reserved context IDs (linux/vm_sockets.h).
VMADDR_CID_HYPERVISOR = 0
VMADDR_CID_LOCAL = 1
VMADDR_CID_HOST = 2
VMADDR_CID_ANY = 0xFFFFFFFF

MIN_GUEST_CID = 3
MAX_GUEST_CID = VMADDR_CID_ANY - 1
MAX_PORT = 0xFFFFFFFF

DEFAULT_GUEST_CID = 3
DEFAULT_TX_BUFFER_SIZE = 64 * 1024
#: Not an upstream limit (upstream takes any u32), but a buffer this large per connection is
#: a typo, and catching it here beats running out of memory under load.
MAX_TX_BUFFER_SIZE = 64 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 1024
MAX_QUEUE_SIZE = 32768
DEFAULT_GROUPS: tuple[str, ...] = ("default",)

#: Separates forward-listen ports and group names, as upstream does.
SEPARATOR = "+"


# --- single values --------------------------------------------------------------------------
# Each checker returns the converted value or raises ConfigError with a message that names
# the value but not the key; callers prefix the key as the user spelled it.


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        for base in (0, 10):  # 0x1f and 0o17 work; so does 010, which base 0 refuses
            try:
                return int(text, base)
            except ValueError:
                pass
    raise ConfigError(f"{value!r} is not an integer")


def check_guest_cid(value: object) -> int:
    cid = _int(value)
    if not MIN_GUEST_CID <= cid <= MAX_GUEST_CID:
        raise ConfigError(
            f"{cid} is not a guest CID: use {MIN_GUEST_CID}..{MAX_GUEST_CID} "
            f"(0, 1 and 2 are the hypervisor, loopback and host; {VMADDR_CID_ANY:#x} means any)"
        )
    return cid


def check_forward_cid(value: object) -> int:
    cid = _int(value)
    if not 0 <= cid < VMADDR_CID_ANY:
        raise ConfigError(
            f"{cid} is not a CID to connect to: use 0..{VMADDR_CID_ANY - 1} "
            f"({VMADDR_CID_ANY:#x} means any)"
        )
    return cid


def check_port(value: object) -> int:
    port = _int(value)
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"port {port} is out of range 0..{MAX_PORT}")
    return port


def check_ports(value: object) -> tuple[int, ...]:
    """`P1+P2+...` (upstream's spelling), one integer, or (in files) a list of ports."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError("no port given")
        items: list[object] = list(value.split(SEPARATOR))
        if any(not str(item).strip() for item in items):
            raise ConfigError(f"{value!r} has an empty port between '{SEPARATOR}' separators")
    elif isinstance(value, list | tuple):
        items = list(value)
        if not items:
            raise ConfigError("no port given")
    else:
        items = [value]
    ports = tuple(check_port(item) for item in items)
    for i, port in enumerate(ports):
        if port in ports[:i]:
            raise ConfigError(f"port {port} is listed twice")
    return ports


def check_tx_buffer_size(value: object) -> int:
    size = _int(value)
    if size <= 0:
        raise ConfigError(f"{size} must be greater than 0")
    if size > MAX_TX_BUFFER_SIZE:
        raise ConfigError(f"{size} is larger than 64 MiB ({MAX_TX_BUFFER_SIZE} bytes)")
    return size


def check_queue_size(value: object) -> int:
    size = _int(value)
    if not 1 <= size <= MAX_QUEUE_SIZE or size & (size - 1):
        raise ConfigError(f"{size} is not a power of two in 1..{MAX_QUEUE_SIZE}")
    return size


def check_group(name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"group name {name!r} is not a string")
    if not name:
        raise ConfigError("a group name is empty")
    if SEPARATOR in name:
        raise ConfigError(f"group name {name!r} contains '{SEPARATOR}'")
    return name


def check_groups(value: object) -> tuple[str, ...]:
    """`g1+g2` (upstream's spelling) or (in files) a list of names; repeats are dropped."""
    if isinstance(value, str):
        names: list[object] = list(value.split(SEPARATOR))
        if "" in names:
            raise ConfigError(f"{value!r} has an empty group name")
    elif isinstance(value, list | tuple):
        names = list(value)
        if not names:
            raise ConfigError("no group given")
    else:
        raise ConfigError(f"{value!r} is not a group list like g1+g2")
    return tuple(dict.fromkeys(check_group(name) for name in names))


def check_path(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{value!r} is not a path")
    if not value:
        raise ConfigError("the path is empty")
    if "\0" in value:
        raise ConfigError(f"{value!r} contains a NUL byte")
    return value


def check_backend(
    uds_path: str | None,
    forward_cid: int | None,
    forward_listen: tuple[int, ...] | None,
    spell: Callable[[str], str] = str,
) -> None:
    """Exactly one backend: hybrid (uds-path) or AF_VSOCK (forward-cid, the only one
    that takes forward-listen ports). `spell` names a key as the user wrote it (the
    command line's --flags)."""
    uds, cid, listen = spell("uds-path"), spell("forward-cid"), spell("forward-listen")
    if uds_path is not None and forward_cid is not None:
        raise ConfigError(
            f"{uds} and {cid} cannot be used together: choose the hybrid "
            "(Unix socket) backend or the AF_VSOCK backend"
        )
    if uds_path is None and forward_cid is None:
        raise ConfigError(
            f"a backend is missing: give {uds} (hybrid, Unix sockets) or {cid} (AF_VSOCK)"
        )
    if forward_listen and forward_cid is None:
        raise ConfigError(f"{listen} needs {cid} (it is for the AF_VSOCK backend)")


def _field(key: str, check: Callable[[object], T], value: object) -> T:
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _same_path(a: str, b: str) -> bool:
    return _path_key(a) == _path_key(b)


def _path_key(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


# --- one VM ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmConfig:
    """One guest's device. Exactly one backend: hybrid (`uds_path`) or AF_VSOCK
    (`forward_cid`, optionally with `forward_listen` ports). Checked on construction."""

    guest_cid: int
    socket: str
    uds_path: str | None = None
    forward_cid: int | None = None
    forward_listen: tuple[int, ...] = ()
    tx_buffer_size: int = DEFAULT_TX_BUFFER_SIZE
    queue_size: int = DEFAULT_QUEUE_SIZE
    groups: tuple[str, ...] = DEFAULT_GROUPS

    def __post_init__(self) -> None:
        _field("guest-cid", check_guest_cid, self.guest_cid)
        _field("socket", check_path, self.socket)
        if self.uds_path is not None:
            _field("uds-path", check_path, self.uds_path)
        if self.forward_cid is not None:
            _field("forward-cid", check_forward_cid, self.forward_cid)
        if self.forward_listen:
            _field("forward-listen", check_ports, self.forward_listen)
        _field("tx-buffer-size", check_tx_buffer_size, self.tx_buffer_size)
        _field("queue-size", check_queue_size, self.queue_size)
        if not self.groups:
            raise ConfigError("groups: no group given")
        for group in self.groups:
            _field("groups", check_group, group)
        check_backend(self.uds_path, self.forward_cid, self.forward_listen)
        if self.uds_path is not None and _same_path(self.socket, self.uds_path):
            raise ConfigError(f"socket and uds-path are the same path {self.socket!r}")


#: Accepted key spellings (kebab-case as in `--vm`, snake_case as in files) -> canonical key.
KEYS: dict[str, str] = {
    spelling: key
    for key in (
        "guest-cid",
        "socket",
        "uds-path",
        "forward-cid",
        "forward-listen",
        "tx-buffer-size",
        "queue-size",
        "groups",
    )
    for spelling in (key, key.replace("-", "_"))
}

_CHECKS: dict[str, Callable[[object], Any]] = {
    "guest-cid": check_guest_cid,
    "socket": check_path,
    "uds-path": check_path,
    "forward-cid": check_forward_cid,
    "forward-listen": check_ports,
    "tx-buffer-size": check_tx_buffer_size,
    "queue-size": check_queue_size,
    "groups": check_groups,
}


def build_vm(items: Iterable[tuple[object, object]], *, snake_case: bool = False) -> VmConfig:
    """A VmConfig from (key, value) pairs; `snake_case` only changes how errors spell keys.

    A value of None (YAML `~` or an empty value) counts as not given."""
    given: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key, raw in items:
        canonical = KEYS.get(key) if isinstance(key, str) else None
        if canonical is None:
            known = ", ".join(k.replace("-", "_") if snake_case else k for k in _CHECKS)
            raise ConfigError(f"unknown key {key!r} (known keys: {known})")
        if canonical in given:
            first = given[canonical]
            if first == key:
                raise ConfigError(f"{key} is given twice")
            raise ConfigError(f"{first} and {key} are the same key, given twice")
        given[canonical] = str(key)
        if raw is not None:
            values[canonical] = _field(str(key), _CHECKS[canonical], raw)
    if "socket" not in values:
        raise ConfigError("socket (the vhost-user socket path) is missing")
    return VmConfig(
        guest_cid=values.get("guest-cid", DEFAULT_GUEST_CID),
        socket=values["socket"],
        uds_path=values.get("uds-path"),
        forward_cid=values.get("forward-cid"),
        forward_listen=values.get("forward-listen", ()),
        tx_buffer_size=values.get("tx-buffer-size", DEFAULT_TX_BUFFER_SIZE),
        queue_size=values.get("queue-size", DEFAULT_QUEUE_SIZE),
        groups=values.get("groups", DEFAULT_GROUPS),
    )


def _vm_items(text: str) -> list[tuple[object, object]]:
    body = text.strip()
    if not body:
        raise ConfigError("empty; expected key=value,key=value,...")
    items: list[tuple[object, object]] = []
    for item in body.split(","):
        key, equals, value = item.strip().partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{item.strip()!r} is not key=value")
        items.append((key.strip(), value))
    return items


def parse_vm(text: str) -> VmConfig:
    """One `--vm` value: `key=value` pairs separated by commas (so paths cannot hold commas)."""
    try:
        return build_vm(_vm_items(text))
    except ConfigError as exc:
        raise ConfigError(f"--vm {text!r}: {exc}") from None


# --- several VMs ----------------------------------------------------------------------------


def check_distinct(vms: Sequence[VmConfig]) -> None:
    """The VMs of one process must not share a CID, a socket file or a host listen port."""
    cids: dict[int, VmConfig] = {}
    paths: dict[str, tuple[str, VmConfig]] = {}
    ports: dict[int, VmConfig] = {}
    for vm in vms:
        other = cids.setdefault(vm.guest_cid, vm)
        if other is not vm:
            raise ConfigError(
                f"guest CID {vm.guest_cid} is given to two VMs "
                f"(sockets {other.socket!r} and {vm.socket!r})"
            )
        for role, path in (("vhost-user socket", vm.socket), ("uds path", vm.uds_path)):
            if path is None:
                continue
            other_role, other = paths.setdefault(_path_key(path), (role, vm))
            if other is vm:
                continue
            if other_role == role:
                raise ConfigError(
                    f"{role} {path!r} is used by two VMs "
                    f"(guest CIDs {other.guest_cid} and {vm.guest_cid})"
                )
            raise ConfigError(
                f"{path!r} is both the {other_role} of guest CID {other.guest_cid} "
                f"and the {role} of guest CID {vm.guest_cid}"
            )
        for port in vm.forward_listen:
            other = ports.setdefault(port, vm)
            if other is not vm:
                raise ConfigError(
                    f"forward-listen port {port} is used by two VMs "
                    f"(guest CIDs {other.guest_cid} and {vm.guest_cid})"
                )


def _load_toml(stream: IO[bytes]) -> object:
    try:
        return tomllib.load(stream)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {' '.join(str(exc).split())}") from None


def _load_yaml(stream: IO[bytes]) -> object:
    # Imported here so that `--help` and the man page renderer work without PyYAML.
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """safe_load, except that a key repeated in one mapping is an error (PyYAML
        silently keeps the last, which hides typos such as two `socket:` lines)."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"key {key_node.value!r} appears twice",
                        key_node.start_mark,
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(stream, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None)
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        text = " ".join(str(problem or exc).split())
        raise ConfigError(f"not valid YAML: {text}{where}") from None


def _vms_of(data: object, snake_case: bool) -> list[VmConfig]:
    if data is None:
        raise ConfigError("the file is empty; expected a top-level 'vms' list")
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a top-level mapping with a 'vms' list, not {_kind(data)}")
    unknown = [key for key in data if key != "vms"]
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r} (only 'vms' is known)")
    if "vms" not in data:
        raise ConfigError("the top-level 'vms' list is missing")
    entries = data["vms"]
    if not isinstance(entries, list):
        raise ConfigError(f"'vms' must be a list of VMs, not {_kind(entries)}")
    if not entries:
        raise ConfigError("'vms' is empty: there is no VM to serve")
    vms: list[VmConfig] = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, Mapping):
                raise ConfigError(f"expected a mapping of keys to values, not {_kind(entry)}")
            vms.append(build_vm(entry.items(), snake_case=snake_case))
        except ConfigError as exc:
            raise ConfigError(f"vms[{index}]: {exc}") from None
    check_distinct(vms)
    return vms


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def load_config_file(path: str) -> list[VmConfig]:
    """The `vms:` list of a YAML file (upstream's format) or, named `*.toml`, of a TOML
    file (`[[vms]]` tables). Any other name is read as YAML, like upstream does."""
    toml = path.lower().endswith(".toml")
    try:
        with open(path, "rb") as stream:
            data = _load_toml(stream) if toml else _load_yaml(stream)
        return _vms_of(data, snake_case=True)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
