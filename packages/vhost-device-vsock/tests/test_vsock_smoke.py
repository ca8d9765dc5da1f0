"""One request through the core's frontend to the vhost-device-vsock command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_vsock_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_device_vsock.packet import Op
from vhost_device_vsock.testing import VsockDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

CID = 3


def smoke(daemon: list[str], tmp: Path) -> None:
    """A guest REQUEST to a host port nobody listens on is answered RST; the daemon
    then exits 0 on SIGTERM."""
    sock, uds = tmp / "vm.sock", tmp / "vm.vsock"
    argv = [*daemon, "--vm", f"guest-cid={CID},socket={sock},uds-path={uds}"]
    with (
        daemon_process(argv, log=tmp / "vsock.log", sockets=[sock]),
        Frontend.connect(sock) as frontend,
    ):
        guest = VsockDriver(frontend, CID, queue_size=16)
        guest.send(guest.header(5000, 999, Op.REQUEST))
        reply = guest.recv()
        assert reply.op == Op.RST
        assert (reply.header.src_port, reply.header.dst_port) == (999, 5000)


def test_vsock_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_vsock.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
