"""The vhost-device-vsock command run as a process for tests (frontend, guests, bench)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.qemu import vhost_user_device

DAEMON = [sys.executable, "-m", "vhost_device_vsock.main"]


@dataclass
class Vm:
    """One VM of the daemon: its vhost-user socket and its hybrid Unix socket."""

    cid: int
    socket: Path
    uds: Path

    def listen(self, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A host listener that guest connections to `port` reach."""
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.bind(f"{self.uds}_{port}")
        sock.listen(128)
        sock.settimeout(10)
        return sock

    def connect(self, port: int, early: bytes = b"") -> socket.socket:
        """A host connection to the guest's `port` (the OK line not read yet)."""
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(self.uds))
        sock.sendall(f"CONNECT {port}\n".encode() + early)
        return sock

    def devices(self) -> list[str]:
        # The guest learns its CID from our config space, not from QEMU.
        return vhost_user_device(self.socket, "vhost-user-vsock-pci")


@dataclass
class VsockDaemon:
    vms: list[Vm]
    #: What the daemon logged; complete once the `running_daemon` block has ended.
    stderr: str = field(default="")
    pid: int = 0


def vm_flag(vm: Vm, groups: str = "default", **extra: object) -> list[str]:
    value = f"guest-cid={vm.cid},socket={vm.socket},uds-path={vm.uds},groups={groups}"
    value += "".join(f",{k.replace('_', '-')}={v}" for k, v in extra.items())
    return ["--vm", value]


@contextmanager
def running_daemon(
    tmp_path: Path, cids: tuple[int, ...] = (3,), *, groups: tuple[str, ...] = (), **extra: object
) -> Iterator[VsockDaemon]:
    """One daemon serving a VM per CID (sockets in tmp_path), in the groups given (all
    "default" if none); SIGTERM at the end must make it exit 0 and remove its sockets."""
    vms = [Vm(cid, tmp_path / f"vm{cid}.sock", tmp_path / f"vm{cid}.vsock") for cid in cids]
    argv = [*DAEMON]
    for i, vm in enumerate(vms):
        argv += vm_flag(vm, groups[i] if groups else "default", **extra)
    daemon = VsockDaemon(vms)
    log = tmp_path / "vsock-daemon.log"
    try:
        with daemon_process(argv, log=log, sockets=[vm.socket for vm in vms]) as proc:
            daemon.pid = proc.pid
            yield daemon
    finally:
        daemon.stderr = log.read_text(errors="replace")
    for vm in vms:
        assert not vm.socket.exists()
        assert not vm.uds.exists()
