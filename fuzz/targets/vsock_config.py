"""vhost-device-vsock's configuration: `--vm key=value,...` strings and YAML or TOML
config files (`vms:` lists), as a user or a provisioning tool might write them.

Invariants:
- nothing but ConfigError (a VhostUserError) comes out of parse_vm or load_config_file,
  whatever the text: no parser exception, no TypeError from an odd value type;
- whatever is accepted is a valid VmConfig (constructing it again from its own fields
  succeeds), one backend each, and the VMs of one file are distinct;
- the same `--vm` text always gives the same config.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import atheris
from harness import check, error_tree

from vhost_device_vsock.config import (
    ConfigError,
    VmConfig,
    check_distinct,
    load_config_file,
    parse_vm,
)

_dir = tempfile.mkdtemp(prefix="fuzz-vsock-config-")
YAML = os.path.join(_dir, "vms.yaml")
TOML = os.path.join(_dir, "vms.toml")
EMPTY = '""'
KEYS = [
    "guest-cid",
    "guest_cid",
    "socket",
    "uds-path",
    "uds_path",
    "forward-cid",
    "forward_listen",
    "forward-listen",
    "tx-buffer-size",
    "queue_size",
    "groups",
    "bogus",
]
VALUES = [
    "3",
    "4",
    "/tmp/a.sock",
    "/tmp/b",
    "1024",
    "0",
    "-1",
    "1+2",
    "a+b",
    "",
    "~",
    "4294967295",
    "18446744073709551616",
    "[1, 2]",
    "{a: 1}",
    "256",
    "default+other",
]


def _valid(vm: VmConfig) -> None:
    check(isinstance(vm, VmConfig), f"{vm!r} is not a VmConfig")
    again = VmConfig(**{f.name: getattr(vm, f.name) for f in dataclasses.fields(vm)})
    check(again == vm, f"{vm!r} does not rebuild to itself")
    check((vm.uds_path is None) != (vm.forward_cid is None), f"{vm!r}: not exactly one backend")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 2)
    if fdp.ConsumeBool():  # built from known keys and values, so the checks are reached
        pairs = [
            (fdp.PickValueInList(KEYS), fdp.PickValueInList(VALUES))
            for _ in range(fdp.ConsumeIntInRange(0, 6))
        ]
        if kind == 0:
            text = ",".join(f"{k}={v}" for k, v in pairs)
        elif kind == 1:
            text = "vms:\n" + "".join(
                ("  - " if i == 0 else "    ") + f"{k.replace('-', '_')}: {v}\n"
                for i, (k, v) in enumerate(pairs)
            )
        else:
            text = "[[vms]]\n" + "".join(
                f"{k.replace('-', '_')} = {v or EMPTY}\n" for k, v in pairs
            )
        text += fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16))
    else:
        text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    with error_tree():
        if kind == 0:
            vm = parse_vm(text)
            _valid(vm)
            check(parse_vm(text) == vm, "the same --vm text gave another config")
            return
        path = YAML if kind == 1 else TOML
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        vms = load_config_file(path)
        check(bool(vms), "an empty VM list was accepted")
        for vm in vms:
            _valid(vm)
        try:
            check_distinct(vms)
        except ConfigError as exc:
            check(False, f"accepted VMs that are not distinct: {exc}")
