"""--mock-control: a Unix socket through which the outside world drives mock chips'
input levels, one line per command: `SET <chip-index> <line> <0|1>`, answered by `OK`
or `ERR <reason>`. The protocol is `execute` (pure); `MockControl` only serves it."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, LineError
from .host import Chip, MockChip

log = logging.getLogger(__name__)

MAX_LINE = 256  # a longer command line is refused, never buffered without bound


def _number(text: str) -> bool:
    """ASCII decimal digits only: str.isdigit() also takes '²' or '١', which int()
    refuses (ValueError) or reads as another number."""
    return text.isascii() and text.isdigit()


def execute(chips: Sequence[Chip], command: str) -> str:
    """Run one command line; the answer, without its newline."""
    words = command.split()
    if not words:
        return "ERR empty command"
    if words[0].upper() != "SET" or len(words) != 4:
        return "ERR expected: SET <chip-index> <line> <0|1>"
    chip_text, line_text, level_text = words[1:]
    if not _number(chip_text) or int(chip_text) >= len(chips):
        return f"ERR chip index {chip_text}: there are {len(chips)} chip(s), 0..{len(chips) - 1}"
    chip = chips[int(chip_text)]
    if not isinstance(chip, MockChip):
        return f"ERR chip {chip_text} is a host chip; only mock chips (sN) are driven"
    if level_text not in ("0", "1"):
        return f"ERR level {level_text}: 0 or 1"
    if not _number(line_text):
        return f"ERR line {line_text}: not a number"
    try:
        chip.drive(int(line_text), int(level_text))
    except LineError as exc:
        return f"ERR {exc}"
    return "OK"


def _serve_client(conn: socket.socket, chips: Sequence[Chip]) -> None:
    """One control client, line by line, until it hangs up."""
    with conn, conn.makefile("rb") as rfile:
        while line := rfile.readline(MAX_LINE + 1):
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                conn.sendall(b"ERR command too long\n")
                return
            answer = execute(chips, line.decode(errors="replace"))
            conn.sendall(answer.encode() + b"\n")


class MockControl:
    """Serves --mock-control: one thread sleeping in select() for connections (no
    periodic wake-up, so an idle daemon stays at 0 CPU), one more per control client."""

    def __init__(self, path: Path, chips: Sequence[Chip]) -> None:
        self.path = path
        self.chips = chips
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            if path.is_socket():
                path.unlink()
            self._listener.bind(str(path))
            self._listener.listen(8)
        except OSError as exc:
            self._listener.close()
            raise ConfigError(f"--mock-control {path}: {exc.strerror}") from exc
        self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._thread = threading.Thread(target=self._accept, name="mock-control", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("mock control on %s", self.path)

    def _accept(self) -> None:
        while True:
            ready = select.select([self._listener.fileno(), self._wake], [], [])[0]
            if self._wake in ready:
                return
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(
                target=_serve_client, args=(conn, self.chips), name="mock-client", daemon=True
            ).start()

    def close(self) -> None:
        os.eventfd_write(self._wake, 1)
        if self._thread.is_alive():
            self._thread.join()
        self._listener.close()
        os.close(self._wake)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
