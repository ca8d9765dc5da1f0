"""vhost-device-sound's control socket: fuzzed bytes from a client of the real
ControlServer (its own thread, a Unix socket), sent in fuzzed pieces, then a QUERY.

Invariants:
- the server answers every line, however long, malformed or non-UTF-8, with exactly
  one line: `OK`, `ERROR <why>` or the state (`output on|off input on|off`), so a
  client counting its newlines is never left waiting; no exception kills the server;
- the final QUERY is answered with the switches' actual state, and the next client is
  served too (the server survived the previous one).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile

import atheris
from harness import check

from vhost_device_sound.control_socket import ControlServer
from vhost_device_sound.protocol import Direction
from vhost_device_sound.switches import Switches

_dir = tempfile.mkdtemp(prefix="fuzz-sound-socket-")
PATH = os.path.join(_dir, "control.sock")
SWITCHES = Switches()
SERVER = ControlServer(PATH, SWITCHES)
ANSWER = re.compile(rb"OK|ERROR .+|output (on|off) input (on|off)")
WORDS = [
    b"QUERY",
    b"SET",
    b"set",
    b"output",
    b"input",
    b"on",
    b"off",
    b"OFF",
    b" ",
    b"\t",
    b"\n",
    b"\r\n",
    b"x" * 300,
    b"\xff",
    b"\xc3\xa9",
]


def _state() -> bytes:
    return b"output %s input %s" % tuple(
        b"on" if SWITCHES.enabled(d) else b"off" for d in (Direction.OUTPUT, Direction.INPUT)
    )


def _lines(data: bytes) -> int:
    return data.count(b"\n")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        stream = b"".join(fdp.PickValueInList(WORDS) for _ in range(fdp.ConsumeIntInRange(0, 12)))
    else:
        stream = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000))
    stream += b"\nQUERY\n"
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    received = b""
    want = stream.count(b"\n")
    try:
        client.connect(PATH)
        sent = 0
        while sent < len(stream):
            size = fdp.ConsumeIntInRange(1, 512) if fdp.remaining_bytes() else len(stream)
            client.sendall(stream[sent : sent + size])
            sent += size
        while _lines(received) < want:
            chunk = client.recv(65536)
            check(chunk, f"server hung up after {_lines(received)} of {want} answers")
            received += chunk
    except TimeoutError:
        check(False, f"server answered {_lines(received)} of {want} lines")
    finally:
        client.close()
    answers = received.split(b"\n")[:-1]
    check(len(answers) == want, f"{len(answers)} answers to {want} lines")
    for answer in answers:
        check(ANSWER.fullmatch(answer), f"malformed answer {answer!r}")
    check(answers[-1] == _state(), f"QUERY answered {answers[-1]!r}, state {_state()!r}")
