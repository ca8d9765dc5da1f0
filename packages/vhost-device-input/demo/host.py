"""The host's side of `xtask demo input`: types "hi" on the sim keyboard through its
events socket once the guest is reading."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

TYPING = b"".join(
    f"EV_KEY {key} {value}\nEV_SYN SYN_REPORT 0\n".encode()
    for key in ("KEY_H", "KEY_I")
    for value in (1, 0)
)


def host(workdir: Path) -> tuple[list[str], dict[str, Callable[[], None]]]:
    events = workdir / "input.sock0.events"

    def type_hi() -> None:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(events))
            client.sendall(TYPING)

    return [], {"INPUT-READY": type_hi}
