"""The host's side of `xtask demo vsock`: a plain Unix-socket program on the daemon's
hybrid host side (`uds-path`), as a user's would be. It listens on `<uds-path>_1234`
for the guest's connection to host port 1234 and answers what it got; once the guest
listens on port 5000 it connects to `<uds-path>`, asks for that port with the CONNECT
line and sends a greeting, then reads the guest's receipt."""

from __future__ import annotations

import socket
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

GUEST_PORT, HOST_PORT = 5000, 1234
GREETING = b"hello guest, this is a host program on the other end of a Unix socket\n" * 64
TIMEOUT = 120.0


def read_to_eof(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def answer(listener: socket.socket) -> None:
    """The guest's connection to host port 1234: read to its half-close, answer."""
    with listener:
        conn, _ = listener.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        data = read_to_eof(conn)
        print(f"host: port {HOST_PORT} got {len(data)} bytes from the guest", flush=True)
        conn.sendall(f"got {len(data)} bytes crc32 {zlib.crc32(data):08x}\n".encode())


def host(workdir: Path) -> tuple[list[str], dict[str, Callable[[], None]]]:
    uds = workdir / "vsock.uds"  # the demo's daemon-args give the daemon this uds-path
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(f"{uds}_{HOST_PORT}")
    listener.listen(1)
    listener.settimeout(TIMEOUT)
    threading.Thread(target=answer, args=(listener,), daemon=True).start()

    def greet() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT)
            conn.connect(str(uds))
            conn.sendall(f"CONNECT {GUEST_PORT}\n".encode())
            reply = conn.makefile("rb").readline()
            if not reply.startswith(b"OK "):
                raise RuntimeError(f"CONNECT {GUEST_PORT} answered {reply!r}")
            conn.sendall(GREETING)
            conn.shutdown(socket.SHUT_WR)
            receipt = read_to_eof(conn).decode().strip()
        print(
            f"host: sent {len(GREETING)} bytes (crc32 {zlib.crc32(GREETING):08x}) to the "
            f"guest's port {GUEST_PORT}; it answered {receipt!r}",
            flush=True,
        )

    return [], {f"LISTENING port={GUEST_PORT}": greet}
