"""vhost-device-gpio's `--mock-control` socket: fuzzed bytes from a client of the real
MockControl server (its own threads, a Unix socket), sent in fuzzed pieces, then a
well-formed SET; two mock chips behind it.

Invariants:
- every command line (up to 256 bytes) gets exactly one answer line, `OK` or
  `ERR <why>`, however it is cut into reads, whatever its bytes; a longer line gets
  `ERR command too long` and the connection ends; the server never dies silently;
- the final SET is answered OK and the chip's line reads the level it set, and the
  next client is served (the server survived the previous one).
"""

from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path

import atheris
from harness import check

from vhost_device_gpio.host import MockChip
from vhost_device_gpio.mockctl import MAX_LINE, MockControl

_dir = tempfile.mkdtemp(prefix="fuzz-gpio-control-")
PATH = Path(_dir) / "control.sock"
CHIPS = [MockChip(4, "s0"), MockChip(8, "s1")]
SERVER = MockControl(PATH, CHIPS)
SERVER.start()
ANSWER = re.compile(rb"OK|ERR .+")
WORDS = [b"SET", b"set", b"0", b"1", b"3", b"7", b"8", b"2", b" ", b"\t", b"\n", b"\r\n"]
WORDS += [b"x" * 300, b"\xff", b"\xc2\xb2", b"\xd9\xa3", b"-1", b"00", b"\0"]


def _lines(data: bytes) -> int:
    return data.count(b"\n")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        stream = b"".join(fdp.PickValueInList(WORDS) for _ in range(fdp.ConsumeIntInRange(0, 12)))
    else:
        stream = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1200))
    line, level = fdp.ConsumeIntInRange(0, 7), fdp.ConsumeIntInRange(0, 1)
    stream += b"\nSET 1 %d %d\n" % (line, level)
    lines = stream.split(b"\n")[:-1]
    too_long = next((i for i, text in enumerate(lines) if len(text) > MAX_LINE), None)
    want = len(lines) if too_long is None else too_long + 1
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    received = b""
    try:
        client.connect(str(PATH))
        sent = 0
        while sent < len(stream):
            size = fdp.ConsumeIntInRange(1, 512) if fdp.remaining_bytes() else len(stream)
            try:
                client.sendall(stream[sent : sent + size])
            except (BrokenPipeError, ConnectionResetError):
                check(too_long is not None, "the server hung up on a client")
                break
            sent += size
        while _lines(received) < want:
            try:
                chunk = client.recv(65536)
            except ConnectionResetError:
                chunk = b""
            check(chunk, f"hung up after {_lines(received)} of {want} answers")
            received += chunk
    except TimeoutError:
        check(False, f"the server answered {_lines(received)} of {want} lines")
    finally:
        client.close()
    answers = received.split(b"\n")[:-1]
    check(len(answers) == want, f"{len(answers)} answers to {want} lines")
    for answer in answers:
        check(ANSWER.fullmatch(answer), f"malformed answer {answer!r}")
    if too_long is not None:
        check(answers[-1] == b"ERR command too long", f"a long line answered {answers[-1]!r}")
        return
    check(answers[-1] == b"OK", f"the final SET answered {answers[-1]!r}")
    check(CHIPS[1].value(line) == level, "the final SET did not set the level")
