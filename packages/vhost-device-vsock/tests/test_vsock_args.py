"""Upstream's three ways to describe VMs (flags, --vm, --config) and every mistake in them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import vhost_device_vsock
from vhost_device_vsock.args import (
    ConfigError,
    VmConfig,
    build_parser,
    load_config_file,
    parse_vm,
    vm_configs,
)
from vhost_user_core import VhostUserError


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def configs(*argv: str) -> list[VmConfig]:
    return vm_configs(parse(*argv))


def rejected(*argv: str) -> str:
    """The one-line message vm_configs gives for a command line argparse accepted."""
    with pytest.raises(VhostUserError) as exc:
        configs(*argv)
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- single-VM flags ------------------------------------------------------------------------


def test_single_vm_defaults() -> None:
    assert configs("--socket", "/tmp/vhost3.socket", "--uds-path", "/tmp/vm3.vsock") == [
        VmConfig(
            guest_cid=3,
            socket="/tmp/vhost3.socket",
            uds_path="/tmp/vm3.vsock",
            forward_cid=None,
            forward_listen=(),
            tx_buffer_size=65536,
            queue_size=1024,
            groups=("default",),
        )
    ]


def test_single_vm_defaults_are_left_to_vm_configs() -> None:
    args = parse("--socket", "s", "--uds-path", "u")
    for dest in ("guest_cid", "forward_cid", "forward_listen", "tx_buffer_size", "queue_size"):
        assert getattr(args, dest) is None
    assert args.groups is None and args.vm is None and args.config is None
    assert args.log_level in {"debug", "info", "warning", "error"}


def test_single_vm_every_flag() -> None:
    argv = ["--guest-cid", "0x10", "--socket", "/s", "--uds-path", "/u"]
    argv += ["--tx-buffer-size", "4096", "--queue-size", "256", "--groups", "g1+g2"]
    assert configs(*argv) == [VmConfig(16, "/s", "/u", None, (), 4096, 256, ("g1", "g2"))]


def test_single_vm_forwarding() -> None:
    (vm,) = configs("--socket", "/s", "--forward-cid", "1", "--forward-listen", "9000+9001")
    assert (vm.uds_path, vm.forward_cid, vm.forward_listen) == (None, 1, (9000, 9001))
    (vm,) = configs("--socket", "/s", "--forward-cid", "2", "--forward-listen", "4294967295")
    assert vm.forward_listen == (0xFFFFFFFF,)


def test_largest_values() -> None:
    argv = ["--socket", "s", "--uds-path", "u", "--guest-cid", "4294967294"]
    (vm,) = configs(*argv, "--queue-size", "32768", "--tx-buffer-size", str(64 << 20))
    assert (vm.guest_cid, vm.queue_size, vm.tx_buffer_size) == (0xFFFFFFFE, 32768, 64 << 20)
    (vm,) = configs("--socket", "s", "--uds-path", "u", "--queue-size", "1")
    assert vm.queue_size == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "--socket is required"),
        (["--uds-path", "u"], "--socket is required"),
        (["--socket", "s"], "give --uds-path (hybrid, Unix sockets) or --forward-cid"),
        (["--socket", "s", "--uds-path", "u", "--forward-cid", "1"], "cannot be used together"),
        (["--socket", "s", "--uds-path", "u", "--forward-listen", "5"], "needs --forward-cid"),
        (["--socket", "same", "--uds-path", "./same"], "socket and uds-path are the same path"),
    ],
)
def test_single_vm_rejected(argv: list[str], message: str) -> None:
    assert message in rejected(*argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--guest-cid", "2"], "argument --guest-cid: 2 is not a guest CID: use 3..4294967294"),
        (["--guest-cid", "0"], "0, 1 and 2 are the hypervisor, loopback and host"),
        (["--guest-cid", "4294967295"], "0xffffffff means any"),
        (["--guest-cid", "three"], "'three' is not an integer"),
        (["--forward-cid", "4294967295"], "argument --forward-cid: 4294967295 is not a CID"),
        (["--forward-cid", "-1"], "-1 is not a CID to connect to"),
        (["--forward-listen", "4294967296"], "port 4294967296 is out of range 0..4294967295"),
        (["--forward-listen", "-1"], "port -1 is out of range"),
        (["--forward-listen", "1++2"], "has an empty port"),
        (["--forward-listen", "1+1"], "port 1 is listed twice"),
        (["--forward-listen", "http"], "'http' is not an integer"),
        (["--tx-buffer-size", "0"], "argument --tx-buffer-size: 0 must be greater than 0"),
        (["--tx-buffer-size", "67108865"], "67108865 is larger than 64 MiB (67108864 bytes)"),
        (["--queue-size", "1000"], "argument --queue-size: 1000 is not a power of two in 1..32768"),
        (["--queue-size", "65536"], "is not a power of two in 1..32768"),
        (["--queue-size", "0"], "is not a power of two"),
        (["--groups", "a++b"], "argument --groups: 'a++b' has an empty group name"),
        (["--groups", ""], "has an empty group name"),
        (["--socket", ""], "argument --socket: the path is empty"),
        (["--log-level", "loud"], "invalid choice"),
        (["--socket-fd", "3"], "unrecognized arguments"),
        (["--vm"], "expected one argument"),
    ],
)
def test_flag_values_rejected_by_argparse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --- --vm -----------------------------------------------------------------------------------


def test_several_vms() -> None:
    vms = configs(
        "--vm",
        "guest-cid=4,socket=/tmp/vhost4.socket,uds-path=/tmp/vm4.vsock,"
        "tx-buffer-size=32768,queue-size=256,groups=group1+group2",
        "--vm",
        "guest_cid=5,socket=/tmp/vhost5.socket,uds_path=/tmp/vm5.vsock,"
        "tx_buffer_size=1024,queue_size=128,groups=group2",
        "--vm",
        "socket=/tmp/vhost6.socket,forward-cid=1,forward_listen=22+80",
    )
    assert vms == [
        VmConfig(
            4, "/tmp/vhost4.socket", "/tmp/vm4.vsock", None, (), 32768, 256, ("group1", "group2")
        ),
        VmConfig(5, "/tmp/vhost5.socket", "/tmp/vm5.vsock", None, (), 1024, 128, ("group2",)),
        VmConfig(3, "/tmp/vhost6.socket", None, 1, (22, 80), 65536, 1024, ("default",)),
    ]


def test_vm_defaults_and_leniency() -> None:
    assert parse_vm(" socket=/s , uds-path=/u=x ") == VmConfig(
        guest_cid=3, socket="/s", uds_path="/u=x"
    )
    assert parse_vm("socket=/s,uds-path=/u,groups=a+b+a").groups == ("a", "b")
    assert parse_vm("socket=/s,forward-cid=0,forward-listen=7").forward_listen == (7,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty; expected key=value"),
        ("socket=/s,uds-path=/u,", "'' is not key=value"),
        ("socket=/s,uds-path", "'uds-path' is not key=value"),
        ("=3,socket=/s", "'=3' is not key=value"),
        ("socket=/s,uds-path=/u,cid=3", "unknown key 'cid' (known keys: guest-cid, socket,"),
        ("socket=/s,socket=/t,uds-path=/u", "socket is given twice"),
        ("guest-cid=3,guest_cid=4,socket=/s,uds-path=/u", "guest-cid and guest_cid are the same"),
        ("guest-cid=4,uds-path=/u", "socket (the vhost-user socket path) is missing"),
        ("socket=,uds-path=/u", "socket: the path is empty"),
        ("socket=/s", "a backend is missing: give uds-path"),
        ("socket=/s,uds-path=/u,forward-cid=1", "uds-path and forward-cid cannot be used together"),
        ("socket=/s,uds-path=/u,forward-listen=1", "forward-listen needs forward-cid"),
        ("socket=/s,uds-path=/u,guest-cid=1", "guest-cid: 1 is not a guest CID"),
        ("socket=/s,uds-path=/u,guest_cid=x", "guest_cid: 'x' is not an integer"),
        ("socket=/s,forward-cid=4294967295", "forward-cid: 4294967295 is not a CID"),
        ("socket=/s,forward-cid=1,forward-listen=", "forward-listen: no port given"),
        ("socket=/s,forward-cid=1,forward-listen=1+x", "forward-listen: 'x' is not an integer"),
        ("socket=/s,forward-cid=1,forward-listen=99999999999", "port 99999999999 is out of range"),
        ("socket=/s,uds-path=/u,tx-buffer-size=-5", "tx-buffer-size: -5 must be greater than 0"),
        ("socket=/s,uds-path=/u,tx-buffer-size=1G", "tx-buffer-size: '1G' is not an integer"),
        ("socket=/s,uds-path=/u,tx_buffer_size=100000000", "larger than 64 MiB"),
        ("socket=/s,uds-path=/u,queue-size=100", "queue-size: 100 is not a power of two"),
        ("socket=/s,uds-path=/u,groups=", "groups: '' has an empty group name"),
        ("socket=/s,uds-path=/u,groups=a+", "groups: 'a+' has an empty group name"),
    ],
)
def test_vm_rejected(text: str, message: str) -> None:
    with pytest.raises(VhostUserError) as exc:
        parse_vm(text)
    assert str(exc.value).startswith(f"--vm {text!r}: ")
    assert message in str(exc.value)
    assert message in rejected("--vm", text)


@pytest.mark.parametrize(
    "vms, message",
    [
        (
            ["socket=/a,uds-path=/ua", "socket=/b,uds-path=/ub"],
            "guest CID 3 is given to two VMs (sockets '/a' and '/b')",
        ),
        (
            ["guest-cid=4,socket=/a,uds-path=/ua", "guest-cid=5,socket=/a,uds-path=/ub"],
            "vhost-user socket '/a' is used by two VMs (guest CIDs 4 and 5)",
        ),
        (
            ["guest-cid=4,socket=/a,uds-path=/u", "guest-cid=5,socket=/b,uds-path=/tmp/../u"],
            "uds path '/tmp/../u' is used by two VMs (guest CIDs 4 and 5)",
        ),
        (
            ["guest-cid=4,socket=/a,uds-path=/b", "guest-cid=5,socket=/b,uds-path=/c"],
            "'/b' is both the uds path of guest CID 4 and the vhost-user socket of guest CID 5",
        ),
        (
            [
                "guest-cid=4,socket=/a,forward-cid=1,forward-listen=80+81",
                "guest-cid=5,socket=/b,forward-cid=1,forward-listen=81",
            ],
            "forward-listen port 81 is used by two VMs (guest CIDs 4 and 5)",
        ),
    ],
)
def test_vms_that_clash(vms: list[str], message: str) -> None:
    argv = [arg for text in vms for arg in ("--vm", text)]
    assert rejected(*argv) == f"--vm: {message}"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guest-cid", "4"], "--vm cannot be combined with --guest-cid"),
        (["--socket", "/s"], "--vm cannot be combined with --socket"),
        (["--queue-size", "8", "--groups", "g"], "cannot be combined with --queue-size, --groups"),
        (["--config", "vms.yaml"], "--vm cannot be combined with --config"),
    ],
)
def test_vm_mixed_with_other_styles(extra: list[str], message: str) -> None:
    assert message in rejected("--vm", "socket=/a,uds-path=/u", *extra)


def test_config_mixed_with_flags() -> None:
    assert rejected("--config", "vms.yaml", "--uds-path", "/u") == (
        "--config cannot be combined with --uds-path: put that setting in the VM description"
    )


# --- --config -------------------------------------------------------------------------------

YAML = """\
vms:
    - guest_cid: 4
      socket: /tmp/vhost4.socket
      uds_path: /tmp/vm4.vsock
      tx_buffer_size: 64000
      queue_size: 256
      groups: group1+group2
    - guest_cid: 5
      socket: /tmp/vhost5.socket
      forward_cid: 1
      forward_listen: 9000+9001
      groups: [group2, group3]
    - socket: /tmp/vhost6.socket
      uds_path: /tmp/vm6.vsock
"""

TOML = """\
[[vms]]
guest_cid = 4
socket = "/tmp/vhost4.socket"
uds_path = "/tmp/vm4.vsock"
tx_buffer_size = 64000
queue_size = 256
groups = "group1+group2"

[[vms]]
guest_cid = 5
socket = "/tmp/vhost5.socket"
forward_cid = 1
forward_listen = [9000, 9001]
groups = ["group2", "group3"]

[[vms]]
socket = "/tmp/vhost6.socket"
uds_path = "/tmp/vm6.vsock"
"""

EXPECTED = [
    VmConfig(4, "/tmp/vhost4.socket", "/tmp/vm4.vsock", None, (), 64000, 256, ("group1", "group2")),
    VmConfig(5, "/tmp/vhost5.socket", None, 1, (9000, 9001), 65536, 1024, ("group2", "group3")),
    VmConfig(3, "/tmp/vhost6.socket", "/tmp/vm6.vsock", None, (), 65536, 1024, ("default",)),
]


@pytest.mark.parametrize(
    "name, text", [("vms.yaml", YAML), ("vms.yml", YAML), ("vms.conf", YAML), ("vms.TOML", TOML)]
)
def test_config_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert load_config_file(str(path)) == EXPECTED
    assert configs("--config", str(path), "--log-level", "debug") == EXPECTED


def test_config_file_value_spellings(tmp_path: Path) -> None:
    path = tmp_path / "vms.yaml"
    path.write_text(
        "vms:\n"
        "- {guest_cid: '0x20', socket: /a, forward_cid: 2, forward_listen: 1234}\n"
        "- {guest-cid: 33, socket: /b, uds-path: /u, forward_cid: ~, groups: solo}\n"
    )
    assert load_config_file(str(path)) == [
        VmConfig(32, "/a", forward_cid=2, forward_listen=(1234,)),
        VmConfig(33, "/b", uds_path="/u", groups=("solo",)),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("e.yaml", "", "the file is empty; expected a top-level 'vms' list"),
        ("l.yaml", "- socket: /s\n", "expected a top-level mapping with a 'vms' list, not a list"),
        ("k.yaml", "vm: []\n", "unknown top-level key 'vm' (only 'vms' is known)"),
        ("m.toml", "", "the top-level 'vms' list is missing"),
        ("n.yaml", "vms: []\n", "'vms' is empty: there is no VM to serve"),
        ("s.yaml", "vms: /tmp/s\n", "'vms' must be a list of VMs, not str '/tmp/s'"),
        ("i.yaml", "vms: [3]\n", "vms[0]: expected a mapping of keys to values, not int 3"),
        ("u.yaml", "vms:\n- {socket: /s, uds_path: /u, cid: 3}\n", "vms[0]: unknown key 'cid'"),
        ("w.yaml", "vms:\n- {socket: /s, uds_path: /u, 3: 4}\n", "unknown key 3 (known keys:"),
        ("x.yaml", "vms:\n- {socket: /s, uds_path: /u, cid: 3}\n", "known keys: guest_cid, socket"),
        ("o.yaml", "vms:\n- {uds_path: /u}\n", "vms[0]: socket (the vhost-user socket path)"),
        ("p.yaml", "vms:\n- {socket: 5, uds_path: /u}\n", "vms[0]: socket: 5 is not a path"),
        ("b.yaml", "vms:\n- {socket: /s, uds_path: /u, queue_size: true}\n", "True is not an int"),
        ("f.yaml", "vms:\n- {socket: /s, uds_path: /u, tx_buffer_size: 1.5}\n", "1.5 is not"),
        ("g.yaml", "vms:\n- {socket: /s, uds_path: /u, groups: []}\n", "groups: no group given"),
        ("h.yaml", "vms:\n- {socket: /s, uds_path: /u, groups: [a+b]}\n", "'a+b' contains '+'"),
        ("j.yaml", "vms:\n- {socket: /s, uds_path: /u, groups: ['']}\n", "group name is empty"),
        ("q.yaml", "vms:\n- {socket: /s, uds_path: /u, groups: 7}\n", "7 is not a group list"),
        ("r.yaml", "vms:\n- {socket: /s, forward_cid: 1, forward_listen: []}\n", "no port given"),
        ("t.yaml", "vms:\n- {socket: /s}\n", "vms[0]: a backend is missing"),
        (
            "v.yaml",
            "vms:\n- {socket: /s, uds_path: /u, forward_cid: 1}\n",
            "cannot be used together",
        ),
        (
            "d.yaml",
            "vms:\n- {socket: /a, uds_path: /u}\n- {socket: /b, uds_path: /v}\n",
            "guest CID 3 is given to two VMs (sockets '/a' and '/b')",
        ),
        (
            "y.yaml",
            "vms:\n- socket: /s\n  uds_path: /u\n  socket: /t\n",
            "not valid YAML: key 'socket' appears twice (line 4, column 3)",
        ),
        ("z.yaml", "vms: [\n", "not valid YAML:"),
        (
            "a.toml",
            "[[vms]]\nsocket = /s\n",
            "not valid TOML: Invalid value (at line 2, column 10)",
        ),
        ("c.toml", "[[vms]]\nsocket = '/s'\nsocket = '/t'\n", "not valid TOML:"),
        ("bad.toml", "\udcff", "not valid TOML"),
    ],
)
def test_config_file_rejected(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode(errors="surrogateescape"))
    with pytest.raises(VhostUserError) as exc:
        load_config_file(str(path))
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert str(exc.value) == rejected("--config", str(path))


def test_config_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.yaml"
    assert rejected("--config", str(missing)) == (
        f"cannot read config file {missing}: No such file or directory"
    )
    assert "Is a directory" in rejected("--config", str(tmp_path))


# --- VmConfig itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"guest_cid": 2}, "guest-cid: 2 is not a guest CID"),
        ({"socket": ""}, "socket: the path is empty"),
        ({"uds_path": "/u\0"}, "uds-path: '/u\\x00' contains a NUL byte"),
        ({"uds_path": None}, "a backend is missing"),
        ({"forward_cid": 1}, "cannot be used together"),
        ({"uds_path": None, "forward_cid": 1, "forward_listen": (1 << 32,)}, "out of range"),
        ({"uds_path": None, "forward_cid": 1, "forward_listen": (5, 5)}, "port 5 is listed twice"),
        ({"tx_buffer_size": 0}, "tx-buffer-size: 0 must be greater than 0"),
        ({"queue_size": 3}, "queue-size: 3 is not a power of two"),
        ({"groups": ()}, "groups: no group given"),
        ({"groups": ("a+b",)}, "groups: group name 'a+b' contains '+'"),
    ],
)
def test_vm_config_checks_itself(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"guest_cid": 3, "socket": "/s", "uds_path": "/u"}
    with pytest.raises(ConfigError) as exc:
        VmConfig(**(base | fields))  # type: ignore[arg-type]
    assert message in str(exc.value)
    assert isinstance(exc.value, VhostUserError)


# --- help and man page text -----------------------------------------------------------------


def test_help_text() -> None:
    parser = build_parser()
    assert parser.prog == "vhost-device-vsock"
    assert parser.description == (
        "vhost-user virtio-vsock backend: hybrid vsock over Unix sockets, several VMs per process"
    )
    epilog = parser.epilog or ""
    for text in ("`<uds-path>_P`", "`CONNECT <port>\\n`", "`OK <local port>\\n`", "group"):
        assert text in epilog
    text = parser.format_help()
    for flag in ("--guest-cid", "--forward-listen", "--vm", "--config", "--log-level"):
        assert flag in text
    assert "--socket-fd" not in text
    for action in parser._actions:
        for line in (action.help or "").splitlines():
            assert not line.lstrip().startswith("."), line
    for line in epilog.splitlines():
        assert not line.lstrip().startswith("."), line


def test_version_flag() -> None:
    """The command prints the installed distribution's version (pyproject's, the only one)."""
    command = [sys.executable, "-m", "vhost_device_vsock.main", "--version"]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-vsock {vhost_device_vsock.__version__}\n"
