"""vsock's error tree and the fields a handler gets from each error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vhost_device_vsock.connection import State, VsockConnection
from vhost_device_vsock.errors import (
    ConfigError,
    GuestOverrun,
    HandshakeError,
    HostSideError,
    VsockError,
)
from vhost_device_vsock.hostside import parse_connect
from vhost_device_vsock.main import run
from vhost_device_vsock.packet import SocketType
from vhost_user_core import BackendError, VhostUserError


def test_tree_is_rooted_in_the_core() -> None:
    assert issubclass(VsockError, VhostUserError)
    for error in (ConfigError, HostSideError, HandshakeError, GuestOverrun):
        assert issubclass(error, VsockError)
    assert issubclass(HostSideError, BackendError)
    assert issubclass(HandshakeError, ValueError)


def test_handshake_garbage() -> None:
    with pytest.raises(HandshakeError, match="expected 'CONNECT <port>'"):
        parse_connect(b"HELLO 5\n")


def test_guest_overrun_names_the_connection_and_the_window() -> None:
    host, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn = VsockConnection(1234, 5678, SocketType.SEQPACKET, host, State.ESTABLISHED, 16)
    try:
        with pytest.raises(GuestOverrun) as info:
            conn.from_guest([memoryview(b"x" * 32)], 32, False)  # no EOM: all held
        assert (info.value.key, info.value.held, info.value.window) == ((1234, 5678), 32, 16)
    finally:
        conn.close()
        peer.close()


def test_host_side_failure_names_the_vm(tmp_path: Path) -> None:
    uds = tmp_path / "missing-dir" / "vm3.vsock"
    with pytest.raises(HostSideError) as info:
        run(["--guest-cid", "3", "--socket", str(tmp_path / "s"), "--uds-path", str(uds)])
    assert info.value.cid == 3
    assert str(info.value).startswith("VM with CID 3: ")
