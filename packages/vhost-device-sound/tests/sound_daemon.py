"""The vhost-device-sound command run as a process for tests (CLI, guests)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.qemu import vhost_user_device

DAEMON = [sys.executable, "-m", "vhost_device_sound.main"]


@dataclass
class SoundDaemon:
    socket: Path
    control: Path | None
    #: What the daemon logged; complete once the `running_daemon` block has ended.
    stderr: str = ""

    def ask(self, line: str) -> str:
        """One control-socket command and its answer."""
        assert self.control is not None, "started without --control-socket"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.control))
            sock.sendall(line.encode() + b"\n")
            return sock.makefile().readline().strip()

    def devices(self, *, controls: bool = False) -> list[str]:
        """QEMU arguments for a vhost-user-snd-pci on this daemon."""
        extra = {"controls": "on"} if controls else {}
        return vhost_user_device(self.socket, "vhost-user-snd-pci", **extra)


@contextmanager
def running_daemon(
    tmp_path: Path, *flags: str, control: bool = False, env: dict[str, str] | None = None
) -> Iterator[SoundDaemon]:
    """Start the daemon on tmp_path/snd.sock (and tmp_path/snd.ctl with `control`) with
    `flags`; at the end of the block, SIGTERM must make it exit 0 and remove its sockets."""
    daemon = SoundDaemon(tmp_path / "snd.sock", tmp_path / "snd.ctl" if control else None)
    argv = [*DAEMON, "--socket", str(daemon.socket), *flags]
    if daemon.control is not None:
        argv += ["--control-socket", str(daemon.control)]
    log = tmp_path / "daemon.log"
    sockets = [daemon.socket] + ([daemon.control] if daemon.control is not None else [])
    try:
        with daemon_process(argv, log=log, sockets=sockets, env=env):
            yield daemon
    finally:
        daemon.stderr = log.read_text(errors="replace")
    assert not daemon.socket.exists()
    assert daemon.control is None or not daemon.control.exists()
