"""The vhost-user message decoder: framing over a real Unix socket, fds over
SCM_RIGHTS, and every request's payload codec.

Input: how many fds ride on the first message, then the raw byte stream the peer sends.

Invariants:
- `Connection.recv` and the payload codecs raise nothing but VhostUserError
  (ProtocolError for malformed input, Disconnected at the end of the stream);
- every payload that decodes re-encodes to the bytes it came from, padding aside (no
  field is lost or invented), and decodes back to itself;
- every fd that arrived is either handed to the caller in a Message or closed: none
  leaks, whatever the framing error.
"""

from __future__ import annotations

import array
import os
import socket

import atheris
from harness import check, error_tree

from vhost_user_core.connection import Connection
from vhost_user_core.errors import Disconnected, ProtocolError
from vhost_user_core.protocol import (
    MEM_TABLE_MAX_REGIONS,
    REQUEST_SPECS,
    ConfigSpace,
    MemTable,
    Payload,
    Request,
    SingleRegion,
    check_fd_count,
    decode_payload,
)

_MEMFD = os.memfd_create("fuzz-protocol", os.MFD_CLOEXEC)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _roundtrip(request: Request, payload: bytes) -> None:
    with error_tree():
        decoded = decode_payload(request, payload)
        if decoded is None:
            return
        again = type(decoded).decode(decoded.encode())
        check(again == decoded, f"{request.name}: {decoded!r} decodes back as {again!r}")
        padded = isinstance(decoded, Payload) and "x" in decoded.FORMAT.format
        if isinstance(decoded, Payload | ConfigSpace) and not padded:
            check(decoded.encode() == payload, f"{request.name}: {payload!r} re-encodes wrong")
        elif isinstance(decoded, SingleRegion):  # 8 bytes of padding, then the region
            check(decoded.encode()[8:] == payload[8:], f"{request.name}: {payload!r} re-encodes")
        elif isinstance(decoded, MemTable):
            encoded = decoded.encode()
            # QEMU pads the table to 8 regions; the padding is not part of the table.
            full = len(payload) == 8 + 32 * MEM_TABLE_MAX_REGIONS
            want = payload[: len(encoded)] if full else payload
            check(encoded[8:] == want[8:], f"SET_MEM_TABLE {payload!r} re-encodes wrong")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    nfds = fdp.ConsumeIntInRange(0, 10)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    before = _open_fds()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    conn = Connection(ours)
    try:
        ancillary = []
        if nfds:
            fds = array.array("i", [_MEMFD] * nfds)
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
        theirs.sendmsg([stream], ancillary)
        theirs.shutdown(socket.SHUT_WR)
        while True:
            try:
                msg = conn.recv()
            except (Disconnected, ProtocolError):
                break
            try:
                header = msg.header
                check(len(msg.payload) == header.size, "payload size differs from header")
                try:
                    request = Request(header.request)
                except ValueError:
                    continue
                check(request in REQUEST_SPECS, f"{request.name} has no spec")
                with error_tree():
                    check_fd_count(request, len(msg.fds))
                _roundtrip(request, msg.payload)
            finally:
                msg.close_fds()
    finally:
        conn.close()
        theirs.close()
    after = _open_fds()
    check(after == before, f"{after - before} fds leaked")
