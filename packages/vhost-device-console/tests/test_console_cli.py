"""The command: flags into the config, one-line errors, --version, and the installed
daemon end to end (network and pty backends)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from console_driver import ConsoleDriver

import vhost_device_console
from vhost_device_console.args import ConsoleConfig, build_parser
from vhost_device_console.errors import DeviceError, HostError
from vhost_user_core import BackendError, VhostUserError
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process

DAEMON = [sys.executable, "-m", "vhost_device_console.main"]


def _config(*flags: str) -> ConsoleConfig:
    return ConsoleConfig.from_args(build_parser().parse_args(["-s", "/tmp/x.sock", *flags]))


def test_config_from_flags() -> None:
    assert _config() == ConsoleConfig("nested", 1, 12345, 128)
    assert _config("-b", "network", "-c", "3", "-p", "2000", "-q", "256") == ConsoleConfig(
        "network", 3, 2000, 256
    )


def _error(tmp_path: Path, *flags: str) -> str:
    argv = [*DAEMON, "-s", str(tmp_path / "t.sock"), *flags]
    run = subprocess.run(
        argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    assert run.returncode != 0
    assert not (tmp_path / "t.sock0").exists()  # none left behind
    return run.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["-b", "nested", "-c", "2"],
            "error: the nested backend has one terminal: use --socket-count 1\n",
        ),
        (["-q", "100"], "error: --max-queue-size 100 is not a power of two in 1..32768\n"),
        (
            ["-b", "network", "-p", "65535", "-c", "2"],
            "error: --tcp-port 65535 with 2 sockets goes beyond port 65535\n",
        ),
        (
            ["-b", "nested"],
            "error: the nested backend needs a terminal on stdin (try --backend pty)\n",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    assert _error(tmp_path, *flags) == message


@pytest.mark.parametrize("flags", [["-p", "70000"], ["-b", "serial"], ["-q", "0"]])
def test_argparse_refuses(tmp_path: Path, flags: list[str]) -> None:
    assert "error:" in _error(tmp_path, *flags)


def test_a_busy_tcp_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _error(tmp_path, "-b", "network", "-p", str(port)) == (
            f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
        )


def test_version_flag() -> None:
    run = subprocess.run([*DAEMON, "--version"], capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-console {vhost_device_console.__version__}\n"


def test_errors_are_rooted_in_the_core_tree() -> None:
    assert issubclass(DeviceError, VhostUserError)
    assert issubclass(HostError, BackendError) and issubclass(HostError, DeviceError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_network_daemon_socket_i_on_port_plus_i(tmp_path: Path) -> None:
    port = _free_port()
    base = tmp_path / "t.sock"
    argv = [*DAEMON, "-s", str(base), "-c", "2", "-b", "network", "-p", str(port)]
    with daemon_process(argv, log=tmp_path / "log", sockets=[f"{base}0", f"{base}1"]):
        with Frontend.connect(f"{base}1") as frontend:
            driver = ConsoleDriver(frontend)
            driver.handshake()
            with socket.create_connection(("127.0.0.1", port + 1), timeout=5) as sock:
                time.sleep(0.2)
                driver.send(driver.tx, b"second")
                assert sock.recv(16) == b"second"


def test_pty_daemon_prints_its_path_and_serves_it(tmp_path: Path) -> None:
    base = tmp_path / "t.sock"
    log = tmp_path / "log"
    with daemon_process([*DAEMON, "-s", str(base), "-b", "pty"], log=log, sockets=[f"{base}0"]):
        match = re.search(
            r"char device redirected to (/dev/pts/\d+) \(label console0\)", log.read_text()
        )
        assert match, log.read_text()
        fd = os.open(match.group(1), os.O_RDWR | os.O_NOCTTY)
        try:
            with Frontend.connect(f"{base}0") as frontend:
                driver = ConsoleDriver(frontend)
                driver.handshake()
                driver.send(driver.tx, b"\x1b[1mbold\xff")
                assert os.read(fd, 64) == b"\x1b[1mbold\xff"
                driver.post_writable(driver.rx, 64)
                os.write(fd, b"ls\r")
                assert driver.written(driver.rx, 1) == [b"ls\r"]
        finally:
            os.close(fd)
