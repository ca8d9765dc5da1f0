"""The Session request handler's dispatch: fuzzed vhost-user requests with fds (memfds,
eventfds, sockets) sent by the core's real Frontend over a Unix socket to a Session
served as the daemon serves one, memory-table changes and ring kicks mid-stream.

Input: a sequence of requests, each a request id, a payload built field by field (or
raw bytes), the fds it carries, its NEED_REPLY flag, and whether the rings get kicked.

Invariants:
- the serving loop never dies of anything but the end of the connection or a framing
  error (handle() lets no exception out), and no worker callback fails;
- each request that always has a reply gets exactly one, and with REPLY_ACK negotiated
  each NEED_REPLY request gets its ack: the frontend never waits for nothing;
- after every fuzzed request GET_FEATURES is still answered with the offered features;
- in one input of eight, the QEMU start sequence then runs on the same connection and a
  posted chain comes back echoed (the session recovered from whatever came before).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading

import atheris
from harness import check

from vhost_user_core import VhostUserBackend
from vhost_user_core.connection import Connection
from vhost_user_core.errors import Disconnected, ProtocolError, VhostUserError
from vhost_user_core.frontend import VMM_BASE, Frontend
from vhost_user_core.protocol import (
    MAX_FDS,
    REQUEST_SPECS,
    STANDARD_FEATURES,
    VHOST_USER_F_PROTOCOL_FEATURES,
    HeaderFlag,
    ProtocolFeature,
    ReplyKind,
    Request,
)
from vhost_user_core.session import Session
from vhost_user_core.vring import Vring

MEMFD_SIZE = 1 << 16
_MEMFD = os.memfd_create("fuzz-session", os.MFD_CLOEXEC)
os.ftruncate(_MEMFD, MEMFD_SIZE)


class FuzzBackend(VhostUserBackend):
    """Echoes queue 0's readable bytes into its writable ones; two queues on two
    workers, a config space, and BACKEND_REQ, so every dispatch path has something."""

    name = "fuzz"
    num_queues = 2
    max_queue_size = 256
    features = STANDARD_FEATURES
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.BACKEND_REQ

    def queues_per_thread(self) -> list[int]:
        return [1, 2]

    def config_space(self) -> bytes:
        return b"FUZZCFG\0"

    def handle_queue(self, vring: Vring) -> None:
        for batch in vring.batches():
            vring.complete(batch, [0 if c.error else c.write(c.read()) for c in batch])


class _Failures(logging.Handler):
    """Worker callbacks that raised (the worker logs and survives; we must know)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


_failures = _Failures()
logging.getLogger("vhost_user_core.worker").addHandler(_failures)

REQUESTS = [int(r) for r in Request] + [0, 45, 1000, 0xFFFFFFFF]


def _payload(fdp: atheris.FuzzedDataProvider, request: int, region: int) -> bytes:
    """A payload of the request's shape with fuzzed fields, or raw bytes (1 in 8)."""
    try:
        spec = REQUEST_SPECS[Request(request)]
    except ValueError:
        spec = None
    if spec is None or spec.payload is None or fdp.ConsumeIntInRange(0, 7) == 7:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    name = spec.payload.__name__

    def u32() -> int:
        return fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else fdp.ConsumeInt(4) & 0xFFFFFFFF

    if name == "U64":
        choices = [0, 1, 0x100, 0x101, 0x102, STANDARD_FEATURES, int(ProtocolFeature.REPLY_ACK)]
        value = fdp.PickValueInList(choices) if fdp.ConsumeBool() else fdp.ConsumeInt(8)
        return struct.pack("<Q", value & (2**64 - 1))
    if name == "VringState":
        num = fdp.PickValueInList([0, 1, 4, 8, 256, 0x10000]) if fdp.ConsumeBool() else u32()
        return struct.pack("<II", u32(), num)
    if name == "VringAddr":
        addrs = [VMM_BASE + fdp.ConsumeIntInRange(0, MEMFD_SIZE + 64) * 8 for _ in range(3)]
        if fdp.ConsumeIntInRange(0, 7) == 0:
            addrs[fdp.ConsumeIntInRange(0, 2)] = fdp.ConsumeInt(8) & (2**64 - 1)
        return struct.pack("<IIQQQQ", u32(), 0, *addrs, 0)
    if name in ("MemTable", "SingleRegion"):
        descs = b""
        count = fdp.ConsumeIntInRange(0, 9) if name == "MemTable" else 1
        for i in range(count):
            size = fdp.PickValueInList([MEMFD_SIZE, MEMFD_SIZE // 2, 0x1000, 0, 2**64 - 1])
            gpa = fdp.PickValueInList([0, region, MEMFD_SIZE * (i + 1), 2**64 - 0x1000])
            uaddr = (VMM_BASE + gpa if fdp.ConsumeBool() else fdp.ConsumeInt(8)) & (2**64 - 1)
            offset = fdp.PickValueInList([0, 0x1000, 0x100, MEMFD_SIZE, 2**63])
            descs += struct.pack("<QQQQ", gpa, size & (2**64 - 1), uaddr, offset)
        head = struct.pack("<II", count, 0) if name == "MemTable" else bytes(8)
        return head + descs
    if name == "ConfigSpace":
        size = fdp.ConsumeIntInRange(0, 12)
        body = fdp.ConsumeBytes(size if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 20))
        return struct.pack("<III", fdp.ConsumeIntInRange(0, 10), size, 0) + body
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))


def _fds(fdp: atheris.FuzzedDataProvider, kicks: list[int], keep: list[object]) -> list[int]:
    out = []
    for _ in range(fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() else 0):
        kind = fdp.ConsumeIntInRange(0, 3)
        if kind == 0:
            out.append(os.dup(_MEMFD))
        elif kind == 1:
            fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            kicks.append(os.dup(fd))
            out.append(fd)
        elif kind == 2:
            a, b = socket.socketpair()
            keep.append(a)
            out.append(b.detach())
        else:
            out.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    if fdp.ConsumeIntInRange(0, 31) == 31:  # more than a message may carry
        out += [os.dup(_MEMFD) for _ in range(9)]
    return out


def _serve(session: Session, conn: Connection, died: list[BaseException]) -> None:
    try:
        while True:
            session.handle(conn.recv())
    except (Disconnected, ProtocolError):
        pass
    except BaseException as exc:  # noqa: BLE001 - reported to the fuzzing thread
        died.append(exc)


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    backend = FuzzBackend()
    conn = Connection(ours)
    session = Session(conn, backend)
    died: list[BaseException] = []
    server = threading.Thread(target=_serve, args=(session, conn, died), daemon=True)
    server.start()
    frontend = Frontend(Connection(theirs))
    frontend.conn.sock.settimeout(5)
    kicks: list[int] = []
    keep: list[object] = []
    _failures.records.clear()
    offered = backend.features | VHOST_USER_F_PROTOCOL_FEATURES
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 12)):
            request = fdp.PickValueInList(REQUESTS)
            payload = _payload(fdp, request, fdp.PickValueInList([0, MEMFD_SIZE]))
            fds = _fds(fdp, kicks, keep)
            need_reply = fdp.ConsumeBool()
            flags = HeaderFlag.VERSION | (HeaderFlag.NEED_REPLY if need_reply else 0)
            try:
                frontend.conn.send(request, payload, fds, flags=flags)
            finally:
                for fd in fds:
                    os.close(fd)
            n_fds = len(fds)
            if n_fds > MAX_FDS:
                # A framing error: the stream cannot be resynchronised, the daemon hangs up.
                server.join(5)
                check(not server.is_alive(), f"{n_fds} fds did not end the connection")
                return
            if fdp.ConsumeBool():
                for fd in kicks:
                    os.eventfd_write(fd, 1)
            # GET_FEATURES after it: what came before its reply answers the request.
            frontend.conn.send(Request.GET_FEATURES)
            answers = []
            while True:
                reply = frontend.conn.recv()
                reply.close_fds()
                answers.append(reply.header.request)
                if answers.count(Request.GET_FEATURES) > (request == Request.GET_FEATURES):
                    break
            check(reply.payload == struct.pack("<Q", offered), "GET_FEATURES answered wrongly")
            acks = bool(session.acked_protocol_features & ProtocolFeature.REPLY_ACK)
            want = 1 if _always(request) or (need_reply and acks) else 0
            check(answers[:-1] == [request] * want, f"request {request}: answers {answers}")
        if fdp.ConsumeIntInRange(0, 7) == 7:
            _restart(frontend)
        for worker in session.workers:
            barrier = threading.Event()
            worker.call_soon(barrier.set)
            check(barrier.wait(5), "a worker is stuck")
    except (OSError, VhostUserError) as exc:
        check(False, f"the session stopped answering: {exc!r}")
    finally:
        frontend.close()
        server.join(5)
        check(not server.is_alive(), "the serving loop did not end at hang-up")
        session.close()
        for fd in kicks:
            os.close(fd)
        for sock in keep:
            sock.close()  # type: ignore[attr-defined]
    check(not died, f"the serving loop died: {died!r}")
    check(not _failures.records, f"a worker callback failed: {_failures.records[:1]!r}")


def _always(request: int) -> bool:
    try:
        return REQUEST_SPECS[Request(request)].reply is ReplyKind.ALWAYS
    except ValueError:
        return False


def _restart(frontend: Frontend) -> None:
    """What QEMU does on a (re)start, then one echoed chain."""
    frontend.protocol_features = ProtocolFeature(0)
    if frontend.ram is not None:
        frontend.ram.close()
        frontend.ram = None
    frontend.reset_device()
    (queue,) = frontend.start_device(1, 8, memory_size=1 << 20)
    ram = frontend.ram
    assert ram is not None
    src, dst = ram.alloc(16), ram.alloc(16)
    ram.memory.write(src, b"0123456789abcdef")
    head = queue.driver.add([(src, 16, False), (dst, 16, True)])
    queue.publish()
    check(queue.wait_used(1, 5) == [(head, 16)], "the echoed chain after a restart")
    check(ram.memory.read(dst, 16) == b"0123456789abcdef", "echo contents after a restart")
