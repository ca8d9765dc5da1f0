"""One transfer through the core's frontend to the vhost-device-spi command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_spi_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_device_spi.protocol import TransferHead
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DATA = bytes(range(32))


def smoke(daemon: list[str], tmp: Path) -> None:
    """32 bytes clocked out of the simulated controller come back in; the daemon then
    exits 0 on SIGTERM."""
    base = tmp / "spi.sock"
    argv = [*daemon, "--socket-path", str(base), "--device", "sim"]
    with (
        daemon_process(argv, log=tmp / "spi.log", sockets=[f"{base}0"]),
        Frontend.connect(f"{base}0") as frontend,
    ):
        (queue,) = frontend.start_device(1, 16)
        ram = frontend.ram
        assert ram is not None
        head = TransferHead(0, 8, 0, 0, 0, 0, 1_000_000).encode()
        head_gpa, tx_gpa, rx_gpa, result_gpa = (ram.alloc(n) for n in (len(head), 32, 32, 1))
        ram.memory.write(head_gpa, head)
        ram.memory.write(tx_gpa, DATA)
        ram.memory.write(result_gpa, b"\xff")
        chain = [
            (head_gpa, len(head), False),
            (tx_gpa, 32, False),
            (rx_gpa, 32, True),
            (result_gpa, 1, True),
        ]
        queue.driver.add(chain)
        queue.publish()
        assert len(queue.wait_used(1)) == 1
        assert ram.memory.read(result_gpa, 1) == b"\x00"  # TRANS_OK
        assert ram.memory.read(rx_gpa, 32) == DATA


def test_spi_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_spi.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
