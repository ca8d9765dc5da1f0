"""The control socket server through real Unix sockets."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vhost_device_sound.control_protocol import MAX_LINE
from vhost_device_sound.control_socket import ControlServer
from vhost_device_sound.protocol import Direction
from vhost_device_sound.switches import Switches
from vhost_user_core import VhostUserError


class Client:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\n")

    def ask(self, command: str) -> str:
        self.send(command.encode() + b"\n")
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def switches() -> Switches:
    return Switches(frozenset({Direction.OUTPUT}))


@pytest.fixture
def server(tmp_path: Path, switches: Switches) -> Iterator[ControlServer]:
    srv = ControlServer(tmp_path / "control.sock", switches)
    yield srv
    srv.close()


@pytest.fixture
def client(server: ControlServer) -> Iterator[Client]:
    c = Client(server.path)
    yield c
    c.close()


def test_query_and_set(client: Client, switches: Switches) -> None:
    assert client.ask("QUERY") == "output on input off"
    assert client.ask("SET input on") == "OK"
    assert switches.enabled(Direction.INPUT)
    assert client.ask("SET output off") == "OK"
    assert client.ask("QUERY") == "output off input on"


def test_garbage_gets_an_error_and_the_connection_stays(client: Client) -> None:
    for junk in ("HELLO", "SET output", "SET mic on", "\x01\x02\x03", ""):
        assert client.ask(junk).startswith("ERROR ")
    assert client.ask("QUERY") == "output on input off"


def test_invalid_utf8_is_an_error_not_a_crash(client: Client) -> None:
    client.send(b"SET \xff\xfe on\n")
    assert client.line().startswith("ERROR ")
    assert client.ask("QUERY").startswith("output")


def test_crlf_line_endings(client: Client) -> None:
    client.send(b"QUERY\r\n")
    assert client.line() == "output on input off"


def test_long_line_is_refused_once(client: Client) -> None:
    client.send(b"SET output off " + b"x" * (4 * MAX_LINE) + b"\n")
    assert client.line() == f"ERROR line longer than {MAX_LINE} bytes"
    assert client.ask("QUERY") == "output on input off"  # the long line did nothing


def test_long_line_arriving_in_pieces(client: Client) -> None:
    for _ in range(10):
        client.send(b"y" * 100)
    client.send(b"\nQUERY\n")
    assert client.line().startswith("ERROR line longer")
    assert client.line() == "output on input off"


def test_partial_lines_are_assembled(client: Client) -> None:
    for piece in (b"SE", b"T in", b"put o", b"n\nQU", b"ERY\n"):
        client.send(piece)
    assert client.line() == "OK"
    assert client.line() == "output on input on"


def test_several_commands_in_one_packet(client: Client) -> None:
    client.send(b"SET input on\nQUERY\nSET input off\nQUERY\n")
    assert [client.line() for _ in range(4)] == [
        "OK",
        "output on input on",
        "OK",
        "output on input off",
    ]


def test_a_burst_of_lines_is_answered_not_dropped(client: Client) -> None:
    """Found by fuzz/targets/sound_socket.py: the answers to one read of 4 KiB of short
    lines (blank lines get a 70-byte error each) passed the pending-output limit before
    the server had tried to send any, and it dropped a client that reads its answers."""
    client.send(b"\n" * 1200 + b"QUERY\n")
    answers = [client.line() for _ in range(1201)]
    assert all(a.startswith("ERROR empty command") for a in answers[:-1])
    assert answers[-1] == "output on input off"


def test_concurrent_clients(server: ControlServer, switches: Switches) -> None:
    clients = [Client(server.path) for _ in range(8)]
    errors: list[BaseException] = []

    def hammer(client: Client, n: int) -> None:
        try:
            for i in range(50):
                state = "on" if (i + n) % 2 else "off"
                assert client.ask(f"SET output {state}") == "OK"
                assert client.ask("QUERY").startswith("output ")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(c, n)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert not errors
    last = Client(server.path)
    assert last.ask("SET output on") == "OK"
    assert last.ask("QUERY") == "output on input off"
    last.close()


def test_a_client_hanging_up_mid_line_does_not_disturb_others(server: ControlServer) -> None:
    quitter = Client(server.path)
    quitter.send(b"SET out")
    quitter.close()
    stayer = Client(server.path)
    assert stayer.ask("QUERY") == "output on input off"
    stayer.close()


def test_socket_mode_is_0600(server: ControlServer) -> None:
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(server.path.stat().st_mode)
    assert [p.name for p in server.path.parent.iterdir()] == [server.path.name]


def test_close_removes_the_socket(tmp_path: Path, switches: Switches) -> None:
    srv = ControlServer(tmp_path / "c.sock", switches)
    srv.close()
    assert not (tmp_path / "c.sock").exists()
    srv.close()  # twice is fine


def test_stale_socket_is_replaced(tmp_path: Path, switches: Switches) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "c.sock"))
    stale.close()
    srv = ControlServer(tmp_path / "c.sock", switches)
    c = Client(srv.path)
    assert c.ask("QUERY").startswith("output")
    c.close()
    srv.close()


def test_regular_file_is_not_replaced(tmp_path: Path, switches: Switches) -> None:
    (tmp_path / "c.sock").write_text("precious")
    with pytest.raises(VhostUserError, match="not a socket"):
        ControlServer(tmp_path / "c.sock", switches)
    assert (tmp_path / "c.sock").read_text() == "precious"


def test_listeners_hear_every_change(client: Client, switches: Switches) -> None:
    heard: list[tuple[Direction, bool]] = []
    unsubscribe = switches.subscribe(lambda d, on: heard.append((d, on)))
    client.ask("SET input on")
    client.ask("SET output off")
    unsubscribe()
    client.ask("SET input off")
    assert heard == [(Direction.INPUT, True), (Direction.OUTPUT, False)]


def test_a_client_that_never_reads_is_dropped(server: ControlServer) -> None:
    greedy = socket.socket(socket.AF_UNIX)
    greedy.connect(str(server.path))
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.settimeout(5)
    try:
        for _ in range(200):
            greedy.sendall(b"QUERY\n" * 500)
    except (BrokenPipeError, ConnectionResetError):
        pass  # dropped, as it should be
    greedy.close()
    polite = Client(server.path)
    assert polite.ask("QUERY").startswith("output")
    polite.close()
    assert os.path.exists(server.path)
