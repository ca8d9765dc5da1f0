"""`xtask demo`'s declarations (`[tool.vhost-device.demo]`): every package's parses, and
the daemon's command line it gives; the demos themselves boot QEMU and are run by hand
(`python3 xtask demo DEVICE`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtask.demo import Demo
from xtask.workspace import discover, find


def test_every_declared_demo_parses() -> None:
    demos = {p.short: Demo.of(p) for p in discover() if p.demo is not None}
    assert {"rng", "vsock"} <= set(demos)
    for demo in demos.values():
        assert demo.qemu_device.startswith("vhost-user-") and demo.script.strip()


def test_the_socket_goes_after_the_socket_flag_by_default() -> None:
    rng = Demo.of(find("rng", discover()))
    assert rng.daemon_argv(Path("/w/rng.sock"), Path("/w")) == ["--socket-path", "/w/rng.sock"]


def test_daemon_args_put_the_socket_and_workdir_inside_an_argument() -> None:
    """vsock takes its socket inside `--vm`, its host side's Unix socket in the demo's
    directory; the socket the demo waits for is the path itself (no suffix)."""
    vsock = Demo.of(find("vsock", discover()))
    assert vsock.daemon_argv(Path("/w/vsock.sock"), Path("/w")) == [
        "--vm",
        "guest-cid=3,socket=/w/vsock.sock,uds-path=/w/vsock.uds",
    ]
    assert vsock.socket_suffix == ""


def test_daemon_args_and_a_socket_flag_do_not_mix() -> None:
    package = find("vsock", discover())
    table = dict(package.demo or {}, flags=["-v"])
    package.__dict__["pyproject"] = {**package.pyproject, "tool": {"vhost-device": {"demo": table}}}
    with pytest.raises(LookupError, match="daemon-args replaces flags"):
        Demo.of(package)
