"""--mock-control: a Unix socket through which the outside world drives mock chips'
input levels, one line per command: `SET <chip-index> <line> <0|1>`, answered by `OK`
or `ERR <reason>`. The protocol is `execute` (pure); `MockControl` only serves it."""

from __future__ import annotations

import logging
import os
import socketserver
import threading
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, LineError
from .host import Chip, MockChip

log = logging.getLogger(__name__)

MAX_LINE = 256  # a longer command line is refused, never buffered without bound


def execute(chips: Sequence[Chip], command: str) -> str:
    """Run one command line; the answer, without its newline."""
    words = command.split()
    if not words:
        return "ERR empty command"
    if words[0].upper() != "SET" or len(words) != 4:
        return "ERR expected: SET <chip-index> <line> <0|1>"
    chip_text, line_text, level_text = words[1:]
    if not chip_text.isdigit() or int(chip_text) >= len(chips):
        return f"ERR chip index {chip_text}: there are {len(chips)} chip(s), 0..{len(chips) - 1}"
    chip = chips[int(chip_text)]
    if not isinstance(chip, MockChip):
        return f"ERR chip {chip_text} is a host chip; only mock chips (sN) are driven"
    if level_text not in ("0", "1"):
        return f"ERR level {level_text}: 0 or 1"
    if not line_text.isdigit():
        return f"ERR line {line_text}: not a number"
    try:
        chip.drive(int(line_text), int(level_text))
    except LineError as exc:
        return f"ERR {exc}"
    return "OK"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                self.wfile.write(b"ERR command too long\n")
                return
            answer = execute(self.server.chips, line.decode(errors="replace"))
            self.wfile.write(answer.encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    chips: Sequence[Chip]


class MockControl:
    """Serves --mock-control on its own thread (one for all lines and chips)."""

    def __init__(self, path: Path, chips: Sequence[Chip]) -> None:
        self.path = path
        try:
            if path.is_socket():
                path.unlink()
            self._server = _Server(str(path), _Handler)
        except OSError as exc:
            raise ConfigError(f"--mock-control {path}: {exc.strerror}") from exc
        self._server.chips = chips
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mock-control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("mock control on %s", self.path)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
