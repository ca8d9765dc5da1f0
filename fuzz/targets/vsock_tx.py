"""vhost-device-vsock's packet path: fuzzed guest packets (every header field, payload,
split across descriptors) on the tx queue, rx buffers, and host programs that connect to
the hybrid socket with fuzzed CONNECT lines, send data and hang up, on a real VM with its
host side in a temporary directory and a host listener for guest connections.

Kicks are served as the daemon serves them (`Kick`): the C fast paths
(`_datapath.TxFastPath`, `RxFastPath`, and `HostReader` for host data) first, then
`handle_queue` for the rest.

Invariants:
- nothing but VhostUserError escapes a kick, the worker's callbacks or timers;
- tx buffers come back with length 0; every rx buffer's used length fits it and holds a
  well-formed packet to this guest (CID 3) from the host (CID 2), a sibling, or (an RST)
  the CID a guest packet named, with a
  known op and a payload length within the buffer;
- afterwards a guest REQUEST to the listening host port is answered with RESPONSE.

The VM (host side, listeners) outlives each input, as it outlives a VMM connection in
the daemon; every input gets a fresh backend, as a reconnecting VMM does.
"""

from __future__ import annotations

import os
import socket
import tempfile

import atheris
from harness import Rig, check, chunks

from vhost_device_vsock.config import VmConfig
from vhost_device_vsock.device import VsockBackend
from vhost_device_vsock.packet import (
    HEADER,
    HEADER_SIZE,
    VIRTIO_VSOCK_F_SEQPACKET,
    Op,
)
from vhost_device_vsock.vm import SiblingMap, VirtualMachine
from vhost_user_core.fastpath import Kick
from vhost_user_core.protocol import STANDARD_FEATURES
from vhost_user_core.vring import Vring

RX, TX, EVENT = 0, 1, 2
GUEST, HOST = 3, 2
PORT = 1234  # a host listener is there
_dir = tempfile.mkdtemp(prefix="fuzz-vsock-")
UDS = os.path.join(_dir, "uds")
OPS = {int(op) for op in Op}


_vms: dict[int, tuple[VirtualMachine, Host]] = {}


def _vm(tx_buffer_size: int) -> tuple[VirtualMachine, Host]:
    if tx_buffer_size not in _vms:
        uds = f"{UDS}{tx_buffer_size}"
        config = VmConfig(
            guest_cid=GUEST,
            socket=os.path.join(_dir, f"vhost{tx_buffer_size}.sock"),
            uds_path=uds,
            tx_buffer_size=tx_buffer_size,
            queue_size=64,
        )
        # Each in a process of its own, as far as CIDs go (all are guest 3).
        _vms[tx_buffer_size] = (VirtualMachine(config, SiblingMap()), Host(uds))
    return _vms[tx_buffer_size]


def _kick(backend: VsockBackend, vring: Vring) -> None:
    """A kick as the daemon's worker serves it: the fast path, then handle_queue."""
    assert vring.kick_fd is not None
    Kick(vring.kick_fd, vring, backend.handle_queue, backend.fast_path(vring)).serve()


def _drain(vm: VirtualMachine) -> None:
    """Host connections the backend never accepted: gone with the input."""
    for listener in vm.host.listeners:
        while True:
            try:
                sock, _ = listener.sock.accept()
            except BlockingIOError:
                break
            sock.close()


class Host:
    """The host side a test would have: a listener for guest connections to PORT and
    the programs that connected through it or to the hybrid socket."""

    def __init__(self, uds: str) -> None:
        self.uds = uds
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        self.listener.bind(f"{uds}_{PORT}")
        self.listener.listen(64)
        self.peers: list[socket.socket] = []

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.peers.append(sock)

    def connect(self, line: bytes) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.connect(self.uds)
            sock.send(line)
        except OSError:
            sock.close()
            return
        self.peers.append(sock)

    def poke(self, fdp: atheris.FuzzedDataProvider) -> None:
        if not self.peers:
            return
        peer = self.peers[fdp.ConsumeIntInRange(0, len(self.peers) - 1)]
        try:
            action = fdp.ConsumeIntInRange(0, 3)
            if action == 0:
                peer.send(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3000)) or b"x")
            elif action == 1:
                peer.recv(65536)
            elif action == 2:
                peer.shutdown(socket.SHUT_WR)
            else:
                self.peers.remove(peer)
                peer.close()
        except OSError:
            pass

    def reset(self) -> None:
        """Close every host program and the guest connections nobody accepted."""
        self.accept()
        for peer in self.peers:
            peer.close()
        self.peers = []


def _packet(fdp: atheris.FuzzedDataProvider) -> bytes:
    payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000) if fdp.ConsumeBool() else 0)
    length = len(payload) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeInt(4) & 0xFFFFFFFF
    header = HEADER.pack(
        fdp.PickValueInList([GUEST, GUEST, GUEST, 4, 0, 2**64 - 1]),
        fdp.PickValueInList([HOST, HOST, HOST, GUEST, 4, 1, 2**64 - 1]),
        fdp.PickValueInList([5000, 5001, 5002, 0, 0xFFFFFFFF, 1 << 30]),
        fdp.PickValueInList([PORT, PORT, 1, 1 << 30, (1 << 30) + 1, 0xFFFFFFFF]),
        length,
        fdp.PickValueInList([1, 1, 1, 2, 0, 3, 0xFFFF]),
        fdp.PickValueInList([int(op) for op in Op] + [8, 0xFFFF]),
        fdp.PickValueInList([0, 0, 1, 2, 3, 0xFFFFFFFF]),
        fdp.PickValueInList([65536, 0, 1, 0xFFFFFFFF, 4096]),
        fdp.PickValueInList([0, 0, 1, 4096, 0xFFFFFFFF, 0x80000000]),
    )
    packet = header + payload
    if fdp.ConsumeIntInRange(0, 15) == 15:
        packet = packet[: fdp.ConsumeIntInRange(0, len(packet))]
    return packet


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    # The VM outlives the VMM connection (as in the daemon): one per tx buffer size,
    # a fresh backend per input.
    vm, host = _vm(fdp.PickValueInList([65536, 4096, 1024]))
    rig = Rig([64, 64, 64], memory=2 << 20, scratch=1 << 20)
    backend = vm.new_backend()
    backend.attach([rig.worker], rig.vrings)
    backend.acked_features(
        STANDARD_FEATURES | (VIRTIO_VSOCK_F_SEQPACKET if fdp.ConsumeBool() else 0)
    )
    rx_sizes: dict[int, int] = {}
    tx_posted: set[int] = set()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 20)):
            op = fdp.ConsumeIntInRange(0, 5)
            if op <= 1:
                packet = _packet(fdp)
                cuts = [
                    fdp.ConsumeIntInRange(0, len(packet))
                    for _ in range(fdp.ConsumeIntInRange(0, 2))
                ]
                head = rig.post(TX, chunks(packet, cuts) or [b"\0"], [])
                if head is not None:
                    tx_posted.add(head)
                rig.publish(TX)
                _kick(backend, rig.vrings[TX])
            elif op == 2:
                for _ in range(fdp.ConsumeIntInRange(1, 4)):
                    size = fdp.PickValueInList([4096, 4096, 44, 100, 20, 65536])
                    head = rig.post(RX, [], [size])
                    if head is not None:
                        rx_sizes[head] = size
                rig.publish(RX)
                _kick(backend, rig.vrings[RX])
            elif op == 3:
                port = fdp.PickValueInList([b"5000", b"5001", b"0", b"4294967295", b"4294967296"])
                line = fdp.PickValueInList(
                    [b"CONNECT " + port + b"\n", b"CONNECT " + port + b"\r\n"]
                )
                if fdp.ConsumeBool():
                    line = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
                host.connect(line + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)))
            elif op == 4:
                host.poke(fdp)
            rig.worker.step(timers=fdp.ConsumeIntInRange(0, 2) if op == 5 else 0)
            host.accept()
            _reap(rig, rx_sizes, tx_posted)
        # The good request: a new guest connection to the listening port (the replies
        # still queued for the fuzzed packets come first).
        rig.reset_scratch() if not rx_sizes and not tx_posted else None
        request = HEADER.pack(GUEST, HOST, 7777, PORT, 0, 1, Op.REQUEST, 0, 65536, 0)
        head = rig.post(TX, [request], [])
        check(head is not None, "no room for the good REQUEST")
        assert head is not None
        tx_posted.add(head)
        rig.publish(TX)
        _kick(backend, rig.vrings[TX])
        answers: list[tuple[int, int, int]] = []
        for _ in range(12):
            for _ in range(4):
                head = rig.post(RX, [], [4096])
                if head is not None:
                    rx_sizes[head] = 4096
            rig.publish(RX)
            host.accept()
            rig.worker.step(timers=0)
            _kick(backend, rig.vrings[RX])
            answers += _reap(rig, rx_sizes, tx_posted)
            if any(a[:2] == (PORT, 7777) for a in answers):
                break
        check((PORT, 7777, Op.RESPONSE) in answers, f"good REQUEST answered with {answers}")
    finally:
        backend.close()
        host.reset()
        _drain(vm)
        rig.close()


def _reap(rig: Rig, rx_sizes: dict[int, int], tx_posted: set[int]) -> list[tuple[int, int, int]]:
    for head, length in rig.used(TX):
        check(head in tx_posted, f"tx head {head} used twice or never posted")
        tx_posted.discard(head)
        check(length == 0, f"tx buffer used with length {length}")
    out = []
    for head, length in rig.used(RX):
        size = rx_sizes.pop(head)
        check(length <= size, f"rx buffer: {length} bytes in {size}")
        if length == 0:  # too small for a header: given back empty
            check(size < HEADER_SIZE, f"an rx buffer of {size} bytes came back empty")
            del rig.writable[RX][head]
            continue
        check(length >= HEADER_SIZE, f"rx packet of {length} bytes")
        packet = rig.written(RX, head, length)
        src, dst, sport, dport, plen, _type, op, _f, _b, _c = HEADER.unpack_from(packet)
        # From the host, or (an RST) from whatever CID the guest addressed.
        check(dst == GUEST and (src in (HOST, 4) or op == Op.RST), f"rx packet {src} -> {dst}")
        check(op in OPS and op != Op.INVALID, f"rx packet op {op}")
        check(plen == length - HEADER_SIZE, f"rx packet len {plen} in {length} used bytes")
        check(op == Op.RW or plen == 0, f"op {op} with a payload")
        out.append((sport, dport, op))
        del rig.writable[RX][head]
    return out
