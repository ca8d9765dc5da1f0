"""The device through a real socket, driven by a multiport driver played over the core's
frontend (QEMU 10 has no vhost-user console), with the network backend on real TCP."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from console_driver import (
    CONSOLE_PORT,
    PORT_ADD,
    PORT_NAME,
    PORT_OPEN,
    RESIZE,
    ConsoleDriver,
)

from vhost_device_console.device import F_EMERG_WRITE, F_MULTIPORT, F_SIZE, ConsoleBackend
from vhost_device_console.host import BUSY_MESSAGE, OUTPUT_LIMIT, NetworkHost, TerminalHost
from vhost_user_core.testing.harness import connected_frontend, recv_exactly


@contextmanager
def network(tmp_path: Path) -> Iterator[tuple[ConsoleDriver, NetworkHost, list[ConsoleBackend]]]:
    host = NetworkHost(0)
    backends: list[ConsoleBackend] = []

    def factory() -> ConsoleBackend:
        backends.append(ConsoleBackend(host))
        return backends[-1]

    try:
        with connected_frontend(factory, tmp_path / "c.sock") as frontend:
            yield ConsoleDriver(frontend), host, backends
    finally:
        host.close()


def client(host: NetworkHost) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", host.port), timeout=5)
    return sock


def test_the_multiport_handshake(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, backends):
        packets = driver.handshake()
        assert [(p, e, v) for p, e, v, _ in packets] == [
            (0, PORT_ADD, 0),
            (0, CONSOLE_PORT, 1),
            (0, PORT_NAME, 0),
            (0, PORT_OPEN, 1),
        ]
        assert packets[2][3] == b"org.vhost-device.console.0"
        driver.frontend.sync()
        assert backends[0].port_ready and backends[0].guest_open


def test_the_guest_closes_and_reopens_the_port(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, backends):
        driver.handshake()
        driver.control(0, PORT_OPEN, 0)
        assert not backends[0].guest_open
        driver.control(0, PORT_OPEN, 1)
        assert backends[0].guest_open


def test_features_and_config(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        features = driver.frontend.features
        assert features & F_MULTIPORT and features & F_EMERG_WRITE
        assert not features & F_SIZE  # a TCP peer has no size
        assert driver.frontend.get_config(0, 12) == struct.pack("<HHII", 0, 0, 1, 0)


def test_guest_output_reaches_the_client_untouched(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        with client(host) as sock:
            time.sleep(0.1)  # accepted by the worker
            data = b"login: \xff\xfe\x80 not utf-8\r\n"
            assert driver.send(driver.tx, data) == 0
            assert recv_exactly(sock, len(data)) == data


def test_client_input_reaches_the_guest(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        driver.post_writable(driver.rx, 64, 4)
        with client(host) as sock:
            sock.sendall(b"root\r\x03")
            got = b""
            while len(got) < 6:
                got += b"".join(driver.written(driver.rx, 1))
            assert got == b"root\r\x03"


def test_input_waits_for_an_rx_buffer(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        with client(host) as sock:
            sock.sendall(b"early")
            time.sleep(0.2)
            driver.post_writable(driver.rx, 64)
            assert driver.written(driver.rx, 1) == [b"early"]


def test_output_before_a_client_is_kept_up_to_the_limit(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        chunk = bytes(range(256)) * 16
        for _ in range(OUTPUT_LIMIT // len(chunk) + 4):  # 4 chunks more than fit
            driver.send(driver.tx, chunk)
        driver.send(driver.tx, b"THE END")
        with client(host) as sock:
            kept = recv_exactly(sock, OUTPUT_LIMIT)
            assert kept.endswith(b"THE END")


def test_a_second_client_is_refused_with_a_message(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        with client(host) as first:
            time.sleep(0.1)
            with client(host) as second:
                assert recv_exactly(second, len(BUSY_MESSAGE)) == BUSY_MESSAGE
                assert second.recv(16) == b""
            driver.send(driver.tx, b"still yours")
            assert recv_exactly(first, 11) == b"still yours"


def test_a_client_may_leave_and_another_come(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        driver.handshake()
        with client(host):
            time.sleep(0.1)
        time.sleep(0.1)
        with client(host) as sock:
            time.sleep(0.1)
            driver.send(driver.tx, b"next")
            assert recv_exactly(sock, 4) == b"next"


def test_emergency_write(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        with client(host) as sock:  # no handshake needed: it is for early boot
            time.sleep(0.1)
            driver.frontend.set_config(8, struct.pack("<I", ord("!")))
            assert recv_exactly(sock, 1) == b"!"


def test_resize_on_sigwinch(tmp_path: Path) -> None:
    """The nested host on a real pseudo-terminal: its size in config and in RESIZE."""
    master, peer = os.openpty()
    fcntl.ioctl(peer, termios.TIOCSWINSZ, struct.pack("<HHHH", 30, 100, 0, 0))
    host = TerminalHost(peer, peer)
    try:
        with connected_frontend(lambda: ConsoleBackend(host), tmp_path / "c.sock") as frontend:
            driver = ConsoleDriver(frontend)
            assert frontend.features & F_SIZE
            assert frontend.get_config(0, 4) == struct.pack("<HH", 100, 30)
            packets = driver.handshake(expect=5)
            assert (packets[3][1], packets[3][3]) == (RESIZE, struct.pack("<HH", 30, 100))
            fcntl.ioctl(peer, termios.TIOCSWINSZ, struct.pack("<HHHH", 50, 132, 0, 0))
            os.kill(os.getpid(), signal.SIGWINCH)
            ((_, event, _, size),) = driver.packets(1)
            assert (event, size) == (RESIZE, struct.pack("<HH", 50, 132))
            os.write(master, b"typed\x03")
            driver.post_writable(driver.rx, 64)
            assert driver.written(driver.rx, 1) == [b"typed\x03"]  # Ctrl-C too
    finally:
        host.close()
        os.close(master)
        os.close(peer)


def test_the_host_end_outlives_a_vmm_reconnect(tmp_path: Path) -> None:
    """A TCP client stays connected while the VMM goes and comes back (a reboot)."""
    host = NetworkHost(0)
    try:
        with connected_frontend(lambda: ConsoleBackend(host), tmp_path / "c.sock") as first:
            driver = ConsoleDriver(first)
            driver.handshake()
            sock = client(host)
            time.sleep(0.1)
            driver.send(driver.tx, b"boot 1 ")
            assert recv_exactly(sock, 7) == b"boot 1 "
        with connected_frontend(lambda: ConsoleBackend(host), tmp_path / "d.sock") as second:
            driver = ConsoleDriver(second)
            driver.handshake()
            driver.send(driver.tx, b"boot 2")
            assert recv_exactly(sock, 6) == b"boot 2"
            driver.post_writable(driver.rx, 16)
            sock.sendall(b"k")
            assert driver.written(driver.rx, 1) == [b"k"]
        sock.close()
    finally:
        host.close()


def test_a_flooding_client_waits_in_its_socket(tmp_path: Path) -> None:
    """With no rx buffer the device stops reading: it holds one read, not the flood."""
    with network(tmp_path) as (driver, host, backends):
        driver.handshake()
        with client(host) as sock:
            sock.setblocking(False)
            sent = 0
            try:
                while sent < 8 << 20:
                    sent += sock.send(bytes(1 << 16))
            except BlockingIOError:
                pass  # the kernel's buffers are full: the device is not reading
            time.sleep(0.2)
            assert len(backends[0]._input) <= 4096
            driver.post_writable(driver.rx, 4096, 4)
            assert sum(map(len, driver.written(driver.rx, 4))) == 4 * 4096
