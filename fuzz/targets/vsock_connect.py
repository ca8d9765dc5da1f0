"""vhost-device-vsock's CONNECT line (`hostside.parse_connect`): what a host program
sends first on the hybrid socket, fed whole or as it might arrive, byte runs at a time.

Invariants:
- it raises nothing but HandshakeError (the device drops that host connection);
- it accepts exactly `CONNECT <decimal port>` (an optional CR) ending in a newline
  within the first 32 bytes plus the newline, with a port that fits 32 bits, and hands
  back every byte after the newline, untouched;
- fed incrementally it never asks for more once a line is complete, and it decides
  as the whole buffer does.
"""

from __future__ import annotations

import re

import atheris
from harness import check

from vhost_device_vsock.hostside import MAX_CONNECT_LINE, HandshakeError, parse_connect

LINE = re.compile(rb"CONNECT ([0-9]+)\r?")


def _parse(buffer: bytes) -> tuple[int, bytes] | None | HandshakeError:
    try:
        return parse_connect(buffer)
    except HandshakeError as exc:
        return exc


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        prefix = b"CONNECT " + str(fdp.ConsumeIntInRange(0, 2**33)).encode()
        buffer = prefix + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4)) + fdp.ConsumeBytes(64)
    else:
        buffer = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = _parse(buffer)
    end = buffer.find(b"\n")
    if end < 0:
        check(
            whole is None if len(buffer) <= MAX_CONNECT_LINE else isinstance(whole, HandshakeError),
            f"{buffer!r} without a newline: {whole!r}",
        )
    else:
        match = LINE.fullmatch(buffer[:end])
        good = match is not None and int(match[1]) <= 0xFFFF_FFFF and end <= MAX_CONNECT_LINE
        if good:
            assert match is not None
            check(whole == (int(match[1]), buffer[end + 1 :]), f"{buffer!r}: {whole!r}")
        else:
            check(isinstance(whole, HandshakeError), f"{buffer!r} accepted as {whole!r}")
    # As it arrives: the first complete decision is the whole buffer's.
    seen = b""
    for size in (fdp.ConsumeIntInRange(1, 8) for _ in range(len(buffer))):
        if len(seen) >= len(buffer):
            break
        seen = buffer[: len(seen) + size]
        partial = _parse(seen)
        if partial is None:
            continue
        if isinstance(partial, HandshakeError):
            check(isinstance(whole, HandshakeError), f"{seen!r} refused, {buffer!r} not")
        else:
            same = (
                isinstance(whole, tuple)
                and whole[0] == partial[0]
                and whole[1].startswith(partial[1])
            )
            check(same, f"{seen!r} gave {partial!r}, the whole buffer {whole!r}")
        break
