"""vhost-device-gpu's cross-domain context (capset 5): fuzzed SUBMIT_3D command buffers
(INIT, GET_IMAGE_REQUIREMENTS, POLL, SEND, WRITE, unknown kinds, with fuzzed cmd_size,
identifiers, pipe guesses, data sizes and stray bytes), fenced on no ring, ring 0, 1 or
a ring that does not exist, mixed with HOST3D CREATE_BLOB, attach and CTX_DESTROY, on
the device's rings (most inputs start with a good INIT), against a real Unix socket
peer that echoes what it gets (so held POLLs are really answered by the worker's
reader callbacks).

Invariants:
- the command parser, checked against a model written here from the protocol (walk
  the 8-byte headers: a size under 8 or past the end must be refused; a clean walk of
  known kinds with whole structs parses to that many commands); it raises nothing
  but CrossDomainProtocolError;
- nothing but VhostUserError escapes `handle_queue` or a reader callback;
- every answer is a known response type within its room, and a fenced one carries
  its fence id back; no more POLLs are answered than were posted;
- afterwards GET_DISPLAY_INFO is answered OK.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading

import atheris
from harness import Rig, check

from vhost_device_gpu.args import GpuConfig
from vhost_device_gpu.crossdomain import protocol as p
from vhost_device_gpu.device import GpuBackend
from vhost_device_gpu.protocol import Resp

MEMORY = 1 << 20
# VIRGL, BLOB, CONTEXT_INIT, VERSION_1
FEATURES = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 32)
KNOWN = {int(r) for r in Resp}
RING_IDS = [1, 2, 3, 0, 99, 1 << 31]
STRUCT_SIZE = {1: 20, 2: 24, 3: 8, 4: 352, 7: 24}


def _echo(conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                data, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(64 * 4))
            except OSError:
                return
            for _level, _kind, blob in ancdata:
                for i in range(0, len(blob) - len(blob) % 4, 4):
                    os.close(int.from_bytes(blob[i : i + 4], "little", signed=True))
            if not data:
                return
            try:
                conn.sendall(data[:256])
            except OSError:
                return


def _serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


PEER_DIR = tempfile.mkdtemp(prefix="fuzz-wayland-")
PEER = os.path.join(PEER_DIR, "wayland-0")
_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
_listener.bind(PEER)
_listener.listen(64)
threading.Thread(target=_serve, args=(_listener,), daemon=True).start()


def model_walk(buffer: bytes) -> int | None:
    """How many commands a correct parser finds, or None if it must refuse."""
    offset, count = 0, 0
    while offset < len(buffer):
        if len(buffer) - offset < 8:
            return None
        kind, _ring, size, _pad = struct.unpack_from("<BBHI", buffer, offset)
        if size < 8 or offset + size > len(buffer):
            return None
        need = STRUCT_SIZE.get(kind)
        if need is None and kind != 1:
            return None
        if kind == 1 and size < 16 or kind != 1 and size < (need or 0):
            return None
        if kind == 4:
            n, data = struct.unpack_from("<II", buffer, offset + 8)
            if n > 28 or 352 + data > size:
                return None
        if kind == 7:
            (data,) = struct.unpack_from("<I", buffer, offset + 16)
            if 24 + data > size:
                return None
        offset += size
        count += 1
    return count


def cd_command(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = fdp.PickValueInList([1, 1, 2, 3, 3, 4, 4, 5, 7, 0, 200])
    if kind == 1:
        body = struct.pack(
            "<III", *(fdp.PickValueInList(RING_IDS) for _ in range(2)),
            fdp.PickValueInList([1, 1, 0, 2]),
        )  # fmt: skip
        if fdp.ConsumeBool():
            body = body[:8] if fdp.ConsumeBool() else body[:4]  # the legacy form, or short
    elif kind == 2:
        body = struct.pack(
            "<IIII", fdp.PickValueInList([0, 1, 64, 4096, 1 << 16, 0xFFFFFFFF]),
            fdp.PickValueInList([0, 1, 3, 1 << 16]),
            fdp.PickValueInList([0x20203852, 0x34325258, 0x34324241, 0, 0x12345678]), 0,
        )  # fmt: skip
    elif kind == 4:
        n = fdp.PickValueInList([0, 1, 2, 28, 29])
        ids = [fdp.PickValueInList([1, 2, 3, 5, 0x8000_0001, 0x8000_0002, 7]) for _ in range(28)]
        types = [fdp.PickValueInList([1, 3, 4, 2, 0]) for _ in range(28)]
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        size = fdp.PickValueInList([len(data), len(data), 0, 5000])
        body = struct.pack("<II28I28I28I", n, size, *ids, *types, *([0] * 28)) + data
    elif kind == 7:
        data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32))
        size = fdp.PickValueInList([len(data), 100])
        body = struct.pack(
            "<IIII", fdp.PickValueInList([3, 5, 7, 0x8000_0001]), fdp.ConsumeIntInRange(0, 1),
            size, 0,
        ) + data  # fmt: skip
    else:
        body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 16))
    size = 8 + len(body)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        size = fdp.PickValueInList([0, 4, size + 8, 0xFFFF])
    return struct.pack("<BBHI", kind, 0, size & 0xFFFF, 0) + body


def gpu_command(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, int]:
    """A control command for context 1 and its response room."""
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice <= 6:  # SUBMIT_3D
        buffer = b"".join(cd_command(fdp) for _ in range(fdp.ConsumeIntInRange(1, 3)))
        if fdp.ConsumeIntInRange(0, 9) == 0:
            buffer += fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 9))
        ring = fdp.PickValueInList([None, 0, 1, 1, 2])
        flags, fence = (3, fdp.ConsumeIntInRange(1, 1 << 40)) if ring is not None else (0, 0)
        head = struct.pack("<IIQIB3x", 0x207, flags, fence, 1, ring or 0)
        return head + struct.pack("<I4x", len(buffer)) + buffer, 24
    if choice == 7:  # a HOST3D blob from an item
        rid = fdp.PickValueInList([5, 6, 1])
        blob_id = fdp.PickValueInList([2, 3, 4, 5, 1 << 33])
        size = fdp.PickValueInList([1, 21, 4096, 1 << 30])
        cmd = struct.pack("<IIQIB3x", 0x10C, 0, 0, 1, 0)
        return cmd + struct.pack("<IIIIQQ", rid, 2, 3, 0, blob_id, size), 24
    if choice == 8:  # attach a resource
        rid = fdp.PickValueInList([1, 2, 5, 6, 9])
        return struct.pack("<IIQIB3x", 0x202, 0, 0, 1, 0) + struct.pack("<I4x", rid), 24
    return struct.pack("<IIQIB3x", 0x201, 0, 0, 1, 0), 24  # destroy


def post(rig: Rig, backend: GpuBackend, request: bytes, room: int) -> int | None:
    head = rig.post(0, [request], [room])
    if head is not None:
        rig.publish(0)
        backend.handle_queue(rig.vrings[0])
    return head


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)

    # the parser alone, against the model
    buffer = b"".join(cd_command(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4)))
    want = model_walk(buffer)
    try:
        got = p.parse_commands(buffer)
    except p.CrossDomainProtocolError:
        check(want is None, f"refused a buffer of {want} good commands: {buffer.hex()}")
    else:
        check(want == len(got), f"parsed {len(got)} commands where the model says {want}")

    # the context on the device's rings, against a real socket
    backend = GpuBackend(GpuConfig("2d", headless=True, wayland_socket=PEER))
    rig = Rig([64, 16], memory=MEMORY)
    backend.attach([rig.worker], rig.vrings)
    backend.memory_changed(rig.device_memory)
    backend.acked_features(FEATURES)
    posted: dict[int, bytes] = {}
    try:
        rings = [rig.alloc(4096) for _ in range(2)]
        setup = [struct.pack("<IIQIB3x", 0x200, 0, 0, 1, 0) + struct.pack("<II64s", 0, 5, b"")]
        for rid, gpa in zip((1, 2), rings, strict=True):
            assert gpa is not None
            blob = struct.pack("<IIQIB3x", 0x10C, 0, 0, 0, 0)
            setup.append(blob + struct.pack("<IIIIQQ", rid, 1, 1, 1, 0, 4096))
            setup[-1] += struct.pack("<QI4x", gpa, 4096)
            setup.append(struct.pack("<IIQIB3x", 0x202, 0, 0, 1, 0) + struct.pack("<I4x", rid))
        if fdp.ConsumeIntInRange(0, 3):  # mostly a live channel: INIT comes first
            init = struct.pack("<BBHIIII", 1, 0, 20, 0, 1, 2, 1)
            setup.append(
                struct.pack("<IIQIB3x", 0x207, 0, 0, 1, 0) + struct.pack("<I4x", 20) + init
            )
        for request in setup:
            post(rig, backend, request, 24)
        rig.used(0)
        for _ in range(fdp.ConsumeIntInRange(1, 10)):
            request, room = gpu_command(fdp)
            head = post(rig, backend, request, room)
            if head is not None:
                posted[head] = request
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                rig.worker.step()
            for used_head, length in rig.used(0):
                request = posted.pop(used_head, b"")
                check(request, "a used entry for a chain not posted (or answered twice)")
                check(length <= room, f"answer of {length} bytes in {room}")
                if length < 24:
                    check(False, f"answer of {length} bytes")
                answer = rig.written(0, used_head, length)
                kind, flags, fence = struct.unpack_from("<IIQ", answer)
                check(kind in KNOWN, f"unknown response type {kind:#x}")
                if struct.unpack_from("<I", request, 4)[0] & 1:
                    check(
                        flags & 1 and fence == struct.unpack_from("<Q", request, 8)[0],
                        "fence lost",
                    )
        head = post(rig, backend, struct.pack("<IIQIB3x", 0x100, 0, 0, 0, 0), 408)
        if head is not None:
            for used_head, length in rig.used(0):
                if used_head == head:
                    answer = rig.written(0, head, length)
                    check(struct.unpack_from("<I", answer)[0] == Resp.OK_DISPLAY_INFO, "no info")
    finally:
        backend.close()
        rig.close()
