"""A hostile guest (or events-socket client): each case alone, and the device goes on
serving afterwards."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from evdev import ecodes as e
from input_driver import BUFFERS, cfg, post_event_buffers, read_events, send_status

from vhost_device_input.device import InputBackend
from vhost_device_input.host import SimDevice
from vhost_device_input.protocol import Select
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import connected_frontend

SYN = (e.EV_SYN, e.SYN_REPORT, 0)
KEY = [(e.EV_KEY, e.KEY_B, 1), SYN]


@pytest.fixture
def keyboard(tmp_path: Path) -> Iterator[SimDevice]:
    device = SimDevice("keyboard", str(tmp_path / "k.events"))
    yield device
    device.close()


def _still_serves(frontend: Frontend, keyboard: SimDevice) -> None:
    eventq = frontend.queues[0]
    post_event_buffers(frontend, eventq, 2)
    keyboard.inject(KEY)
    assert read_events(frontend, eventq, 2) == KEY


def _add(frontend: Frontend, index: int, chain: list[tuple[int, int, bool]]) -> int:
    queue = frontend.queues[index]
    head = queue.driver.add(chain)
    queue.publish()
    return head


def test_eventq_buffer_too_small_is_returned_empty(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        assert fe.ram is not None
        head = _add(fe, 0, [(fe.ram.alloc(4), 4, True)])
        assert eventq.wait_used(1) == [(head, 0)]
        _still_serves(fe, keyboard)


def test_eventq_buffer_read_only_is_returned_empty(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        assert fe.ram is not None
        head = _add(fe, 0, [(fe.ram.alloc(8), 8, False)])
        assert eventq.wait_used(1) == [(head, 0)]
        _still_serves(fe, keyboard)


def test_eventq_buffer_outside_memory_is_returned_empty(
    tmp_path: Path, keyboard: SimDevice
) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        head = _add(fe, 0, [(1 << 44, 8, True)])
        assert eventq.wait_used(1) == [(head, 0)]
        _still_serves(fe, keyboard)


def test_a_split_event_buffer_still_takes_one_event(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        assert fe.ram is not None
        a, b = fe.ram.alloc(3), fe.ram.alloc(5)
        head = _add(fe, 0, [(a, 3, True), (b, 5, True)])  # 8 bytes in two pieces
        BUFFERS[(id(eventq), head)] = -1
        post_event_buffers(fe, eventq, 1)
        keyboard.inject(KEY)
        used = eventq.wait_used(2)
        assert used[0] == (head, 8)
        raw = fe.ram.memory.read(a, 3) + fe.ram.memory.read(b, 5)
        assert struct.unpack("<HHi", raw) == KEY[0]


def test_statusq_short_buffer_is_ignored(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        _, statusq = fe.start_device(2, 64)
        assert fe.ram is not None
        head = _add(fe, 1, [(fe.ram.alloc(4), 4, False)])
        assert statusq.wait_used(1) == [(head, 0)]
        head = send_status(fe, statusq, (e.EV_LED, e.LED_NUML, 1))
        assert statusq.wait_used(1) == [(head, 0)]
    assert keyboard.written == [(e.EV_LED, e.LED_NUML, 1)]


def test_config_writes_change_only_select_and_subsel(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        fe.start_device(2, 64)
        fe.set_config(0, bytes([Select.ID_NAME]))
        fe.set_config(2, b"\x7f")  # size: read-only, ignored
        fe.set_config(8, b"evil")  # the payload: read-only, ignored
        assert cfg(fe, Select.ID_NAME) == b"vhost-device-input sim keyboard"
        # QEMU writes the whole space back: select and subsel taken, the rest ignored
        fe.set_config(0, bytes([Select.ID_SERIAL, 0, 99]) + b"x" * 133)
        assert fe.get_config(0, 3) == bytes([Select.ID_SERIAL, 0, len(b"sim-keyboard")])
        with pytest.raises(Exception):  # noqa: B017 - refused however the core says it
            fe.set_config(130, b"y" * 10)  # beyond the space
        assert cfg(fe, Select.ID_SERIAL) == b"sim-keyboard"
        _still_serves(fe, keyboard)


def test_config_read_beyond_the_space_is_refused(tmp_path: Path, keyboard: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        fe.start_device(2, 64)
        with pytest.raises(Exception, match="GET_CONFIG"):
            fe.get_config(130, 16)
        assert cfg(fe, Select.ID_SERIAL) == b"sim-keyboard"


def test_a_frame_that_never_ends_becomes_syn_dropped(tmp_path: Path, keyboard: SimDevice) -> None:
    backend = InputBackend(keyboard, backlog=8)
    with connected_frontend(lambda: backend, tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        post_event_buffers(fe, eventq, 8)
        keyboard.inject([(e.EV_MSC, e.MSC_SCAN, i) for i in range(20)])  # over 8, one frame
        keyboard.inject([(e.EV_KEY, e.KEY_C, 1), SYN])  # still that frame: dropped with it
        keyboard.inject(KEY)
        got = read_events(fe, eventq, 3)
        assert got == [(e.EV_SYN, e.SYN_DROPPED, 0), *KEY]


def test_garbage_on_the_events_socket_is_answered_and_skipped(
    tmp_path: Path, keyboard: SimDevice
) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        post_event_buffers(fe, eventq, 2)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(tmp_path / "k.events"))
            client.sendall(b"\xff\xfe nonsense\nEV_KEY KEY_NOPE 1\n" + b"x" * 10000)
            client.sendall(b"\nEV_KEY KEY_B 1\nEV_SYN SYN_REPORT 0\n")
            assert read_events(fe, eventq, 2) == KEY
            time.sleep(0.1)
            replies = client.recv(4096).decode()
        # Each bad line is answered once, the overlong one however its bytes arrived.
        assert replies.count("error:") == 3
        assert "a line of over 4096 bytes is skipped" in replies


def test_an_overlong_line_sent_in_pieces_is_refused_once(
    tmp_path: Path, keyboard: SimDevice
) -> None:
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        post_event_buffers(fe, eventq, 2)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(tmp_path / "k.events"))
            for _ in range(5):  # 10 KiB without a newline, read by the device in pieces
                client.sendall(b"x" * 2048)
                time.sleep(0.05)
            client.sendall(b"x\nEV_KEY KEY_B 1\nEV_SYN SYN_REPORT 0\n")
            assert read_events(fe, eventq, 2) == KEY
            time.sleep(0.1)
            assert client.recv(4096).decode().count("error:") == 1


def test_a_line_many_times_the_limit_is_refused_once(tmp_path: Path, keyboard: SimDevice) -> None:
    # Found by fuzzing (fuzz/targets/input_events.py): the skipped rest of a refused line
    # was buffered again, so every further 4 KiB of it was refused once more.
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, _ = fe.start_device(2, 64)
        post_event_buffers(fe, eventq, 2)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(tmp_path / "k.events"))
            for _ in range(20):  # 20 KiB without a newline, read by the device in pieces
                client.sendall(b"x" * 1024)
                time.sleep(0.01)
            client.sendall(b"x\nEV_KEY KEY_B 1\nEV_SYN SYN_REPORT 0\n")
            assert read_events(fe, eventq, 2) == KEY
            time.sleep(0.1)
            assert client.recv(4096).decode().count("error:") == 1


LED = (e.EV_LED, e.LED_CAPSL, 1)
LED_LINE = b"EV_LED LED_CAPSL 1\n"
NL = b"\n"


def _flood(keyboard: SimDevice, lines: int) -> None:
    """The guest's LED writes, `lines` of them, as the worker hands them over; the
    worker must never wait on a client, so this returns at once whoever reads."""
    flood = threading.Thread(target=lambda: [keyboard.write(LED) for _ in range(lines)])
    flood.start()
    flood.join(timeout=10)
    assert not flood.is_alive(), "the device's write blocked on a client"


def _recv_lines(client: socket.socket, lines: int) -> bytes:
    client.settimeout(10)
    got = b""
    while got.count(b"\n") < lines:
        chunk = client.recv(65536)
        assert chunk, f"hung up after {got.count(NL)} lines"
        got += chunk
    return got


def _connect_both(path: Path) -> tuple[socket.socket, socket.socket]:
    """A client that never reads, then one that does; both registered on return (the
    second's answer comes after the first was accepted)."""
    slow, fast = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    slow.connect(str(path))
    fast.connect(str(path))
    fast.sendall(b"nonsense\n")
    assert _recv_lines(fast, 1).startswith(b"error: ")
    return slow, fast


def test_a_client_that_never_reads_stalls_neither_the_device_nor_others(
    tmp_path: Path, keyboard: SimDevice
) -> None:
    # The events socket's lines were sent with a blocking sendall from the worker: a
    # client that stopped reading stalled the device once its socket buffer filled
    # (a few hundred lines), and every other client with it.
    with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
        eventq, statusq = fe.start_device(2, 64)
        slow, fast = _connect_both(tmp_path / "k.events")
        with slow, fast:
            _flood(keyboard, 3000)  # ~56 KiB: past the socket's buffer, under the cap
            assert _recv_lines(fast, 3000) == LED_LINE * 3000
            send_status(fe, statusq, LED)  # the guest's write reaches the reader at once
            assert _recv_lines(fast, 1) == LED_LINE
            _still_serves(fe, keyboard)
            slow.setblocking(False)  # kept, not dropped: its lines wait for it
            assert slow.recv(65536).startswith(LED_LINE)


def test_a_client_too_far_behind_is_dropped_and_logged(
    tmp_path: Path, keyboard: SimDevice, caplog: pytest.LogCaptureFixture
) -> None:
    slow, fast = _connect_both(tmp_path / "k.events")
    with slow, fast:
        _flood(keyboard, 20000)  # 380 KiB: the kernel's buffer and the 64 KiB cap overrun
        slow.settimeout(10)
        got = b""
        while chunk := slow.recv(65536):  # what was sent before the drop, then EOF
            got += chunk
        assert 0 < got.count(b"\n") < 20000 and got == LED_LINE * got.count(b"\n")
        assert "a client over 65536 bytes behind is dropped" in caplog.text
        fast.shutdown(socket.SHUT_WR)  # also far behind: dropped too, not waited for
        fast.settimeout(10)
        while fast.recv(65536):
            pass
    with socket.socket(socket.AF_UNIX) as late:  # the socket still serves
        late.connect(str(tmp_path / "k.events"))
        late.sendall(b"nonsense\n")
        assert _recv_lines(late, 1).startswith(b"error: ")
        keyboard.write(LED)
        assert _recv_lines(late, 1) == LED_LINE


def test_answers_past_the_socket_buffer_all_come(tmp_path: Path, keyboard: SimDevice) -> None:
    # Found by fuzzing (fuzz/targets/input_events.py): 600 bad lines sent before reading
    # fill the client's socket buffer with a few hundred answers; the rest wait in the
    # device's output and come after the next line's event, none lost and none twice.
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "k.events"))
        client.sendall(b"x\n" * 600 + b"EV_KEY KEY_B 1\n")
        deadline = time.monotonic() + 10
        events: list[tuple[int, int, int]] = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.01)
            events = keyboard.read()
        assert events == KEY[:1]
        got = _recv_lines(client, 600)
        assert got.count(NL) == 600
        assert all(line.startswith(b"error: ") for line in got.split(b"\n")[:-1])
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(65536)
