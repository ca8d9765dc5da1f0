"""The guest program of the guest test and the demo (guest/gpio_test.c), and the
host's side of it: driving a mock chip's line through --mock-control."""

from __future__ import annotations

import socket
from pathlib import Path

from vhost_user_core.testing.guest_program import build_static

SOURCE = Path(__file__).parent / "guest" / "gpio_test.c"


def guest_files() -> dict[str, bytes]:
    return {"gpio_test": build_static(SOURCE, "gpio_test")}


def drive(control: Path, chip: int, line: int, level: int) -> None:
    """One SET through the --mock-control socket; AssertionError unless it says OK."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(control))
        sock.sendall(f"SET {chip} {line} {level}\n".encode())
        answer = sock.makefile().readline()
    assert answer == "OK\n", answer
