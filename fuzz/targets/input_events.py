"""vhost-device-input's sim events socket (`<socket>.events`): fuzzed lines from a client
of the real SimDevice server (its own thread, a Unix socket), sent in fuzzed pieces:
event lines by number and by evdev name, comments, blank lines, out-of-range values,
non-UTF-8, lines over 4096 bytes; then one known event line.

Invariants:
- every line with content gets exactly one outcome: one event injected (the line's
  event, in order) or one `error: ...` answer; a line over 4096 bytes is answered
  once and skipped, however its bytes arrive; blank and `#` lines get nothing (the
  answers the client's socket buffer has no room for come after the events);
- the server's thread survives: the final line's event is injected, and the next
  client is served.
"""

from __future__ import annotations

import os
import select
import socket
import tempfile
import time

import atheris
from harness import check

from vhost_device_input.host import MAX_LINE, SimDevice, parse_event_line

_dir = tempfile.mkdtemp(prefix="fuzz-input-events-")
SIM = SimDevice("tablet", os.path.join(_dir, "tablet.events"))
NL = b"\n"
MARK = (3, 0, 424242)  # EV_ABS ABS_X: the line that ends every input
WORDS = [b"EV_KEY", b"BTN_LEFT", b"KEY_A", b"EV_ABS", b"ABS_X", b"EV_SYN", b"SYN_REPORT"]
WORDS += [b"1", b"0", b"-1", b"0x10", b"65536", b"2147483648", b"-2147483649", b"1_0"]
WORDS += [b" ", b"\t", b"\n", b"\r\n", b"#", b"\xff", b"\xc2\xb2", b"x" * 5000, b"EV_FOO"]


def _outcomes(stream: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """The events and the number of error answers the lines of `stream` must give."""
    events, errors = [], 0
    for raw in stream.split(b"\n")[:-1]:
        if len(raw) > MAX_LINE:
            errors += 1
            continue
        text = raw.decode(errors="replace").strip()
        if not text or text.startswith("#"):
            continue
        try:
            events.append(parse_event_line(text))
        except ValueError:
            errors += 1
    return events, errors


def wait_for_mark(timeout: float) -> list[tuple[int, int, int]]:
    """The events injected up to the mark's, waiting on the device's eventfd (what the
    worker polls) rather than sleeping between reads."""
    got: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    while MARK not in got:
        left = deadline - time.monotonic()
        check(left > 0 and select.select([SIM], [], [], left)[0], f"no mark; events {got}")
        got += SIM.read()
    return got


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    SIM.read()
    if fdp.ConsumeBool():
        stream = b"".join(fdp.PickValueInList(WORDS) for _ in range(fdp.ConsumeIntInRange(0, 12)))
    else:
        stream = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000))
    stream += b"\nEV_ABS ABS_X %d\n" % MARK[2]
    events, errors = _outcomes(stream)
    check(events[-1] == MARK, "the mark line does not parse")
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(5)
    try:
        client.connect(str(SIM.events_path))
        sent = 0
        while sent < len(stream):
            size = fdp.ConsumeIntInRange(1, 1024) if fdp.remaining_bytes() else len(stream)
            client.sendall(stream[sent : sent + size])
            sent += size
        got = wait_for_mark(5)
        check(got == events, f"injected {got}, the lines say {events}")
        # What the client's socket buffer took was sent before the mark's batch was
        # injected; the rest waits in the device's output buffer (it never blocks on a
        # client) and follows once this client reads, so the answers are read until
        # all have come, then whatever else is there.
        answers = b""
        try:
            while answers.count(NL) < errors:
                chunk = client.recv(65536)
                check(chunk, f"hung up after {answers.count(NL)} of {errors} answers")
                answers += chunk
        except TimeoutError:
            check(False, f"{answers.count(NL)} of {errors} answers came")
        client.setblocking(False)
        while True:
            try:
                chunk = client.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            answers += chunk
    finally:
        client.close()
    lines = answers.split(b"\n")
    check(lines[-1] == b"", f"an answer without its newline: {lines[-1]!r}")
    check(all(line.startswith(b"error: ") for line in lines[:-1]), f"answers {answers!r}")
    check(len(lines) - 1 == errors, f"{len(lines) - 1} error answers, the lines say {errors}")
