"""A vsock guest driver in Python, over the core's frontend: for tests and benchmarks.

It plays the Linux virtio-vsock driver's part at packet level: it keeps rx buffers
posted, sends packets (header and payload in separate descriptors, as Linux does) and
hands back what the device sent. Connection logic stays with the caller, so tests can
also send what no real driver would.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from vhost_user_core.frontend import Frontend, FrontendQueue

from .packet import HEADER_SIZE, VIRTIO_VSOCK_F_SEQPACKET, Header, Op, SocketType

RX, TX, EVENT = 0, 1, 2
#: Linux posts 4 KiB rx buffers (plus the header).
LINUX_RX_BUFFER = HEADER_SIZE + 4096
#: And sends at most 64 KiB per packet.
MAX_PACKET_PAYLOAD = 64 * 1024


@dataclass
class Packet:
    header: Header
    payload: bytes

    @property
    def op(self) -> int:
        return self.header.op


class VsockDriver:
    """The guest side of one vsock device started through `frontend`."""

    def __init__(
        self,
        frontend: Frontend,
        guest_cid: int,
        *,
        queue_size: int = 256,
        rx_buffer: int = LINUX_RX_BUFFER,
        rx_count: int | None = None,
        tx_slot: int = HEADER_SIZE + MAX_PACKET_PAYLOAD,
        seqpacket: bool = True,
        memory_size: int = 64 << 20,
    ) -> None:
        self.frontend = frontend
        self.cid = guest_cid
        offered = frontend.get_features()
        features = offered if seqpacket else offered & ~VIRTIO_VSOCK_F_SEQPACKET
        self.queues: list[FrontendQueue] = frontend.start_device(
            3, queue_size, memory_size=memory_size, features=features
        )
        self.rx, self.tx, self.event = self.queues
        ram = frontend.ram
        assert ram is not None
        self.memory = ram.memory
        self.rx_buffer = rx_buffer
        self._rx_gpa: dict[int, int] = {}
        for _ in range(rx_count if rx_count is not None else queue_size):
            self._post_rx(ram.alloc(rx_buffer))
        self.rx.publish()
        self.tx_slot = tx_slot
        self._tx_free = deque(ram.alloc(tx_slot) for _ in range(queue_size // 2))
        self._tx_gpa: dict[int, int] = {}
        self.received: deque[Packet] = deque()

    def _post_rx(self, gpa: int) -> None:
        head = self.rx.driver.add([(gpa, self.rx_buffer, True)])
        self._rx_gpa[head] = gpa

    # sending
    def header(
        self,
        src_port: int,
        dst_port: int,
        op: Op,
        *,
        length: int = 0,
        dst_cid: int = 2,
        sock_type: SocketType = SocketType.STREAM,
        flags: int = 0,
        buf_alloc: int = 256 * 1024,
        fwd_cnt: int = 0,
        src_cid: int | None = None,
    ) -> Header:
        return Header(
            self.cid if src_cid is None else src_cid,
            dst_cid,
            src_port,
            dst_port,
            length,
            sock_type,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        )

    def send(self, header: Header, payload: bytes = b"", *, publish: bool = True) -> None:
        """Post one packet: header and payload in two descriptors (one if no payload)."""
        self.send_raw(header.encode(), payload, publish=publish)

    def send_raw(self, header: bytes, payload: bytes = b"", *, publish: bool = True) -> None:
        """Post header bytes as given (short or garbage headers, for hostile tests)."""
        self.send_pieces(header + payload, [len(header)], publish=publish)

    def send_pieces(self, packet: bytes, sizes: Sequence[int], *, publish: bool = True) -> None:
        """Post a packet's bytes (header and payload as one) in descriptors of `sizes`,
        the rest in a last one: a guest may split a chain anywhere. An empty packet
        is one empty descriptor."""
        gpa = self._tx_slot()
        if len(packet) > self.tx_slot:
            raise ValueError("packet larger than a tx slot")
        self.memory.write(gpa, packet)
        chain = []
        offset = 0
        for size in [*sizes, len(packet)]:
            size = min(size, len(packet) - offset)
            if size > 0:
                chain.append((gpa + offset, size, False))
                offset += size
        chain = chain or [(gpa, 0, False)]
        head = self.tx.driver.add(chain)
        self._tx_gpa[head] = gpa
        if publish:
            self.tx.publish()

    def _tx_slot(self) -> int:
        if not self._tx_free:
            self.reap_tx()
        deadline = time.monotonic() + 5
        while not self._tx_free:
            if time.monotonic() > deadline:
                raise TimeoutError("the device does not complete tx buffers")
            self.tx.wait_call(0.1)
            self.reap_tx()
        return self._tx_free.popleft()

    def reap_tx(self) -> int:
        used = self.tx.driver.get_used()
        for head, _ in used:
            self._tx_free.append(self._tx_gpa.pop(head))
        return len(used)

    def wait_tx_done(self, timeout: float = 5.0) -> None:
        """Wait until the device has taken every packet sent."""
        deadline = time.monotonic() + timeout
        while self._tx_gpa:
            self.reap_tx()
            if not self._tx_gpa:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._tx_gpa)} tx packets not completed")
            self.tx.driver.arm_interrupt()
            self.reap_tx()
            self.tx.wait_call(0.05)

    # receiving
    def poll(self, *, payloads: bool = True) -> int:
        """Take the packets the device has sent so far into `received`; re-posts the
        buffers. Returns how many arrived. Without `payloads`, RW packets keep only
        their header (benchmarks count bytes without copying them)."""
        used = self.rx.driver.get_used()
        # Every head is free again: read them all before re-posting reuses one.
        buffers = [(self._rx_gpa.pop(head), length) for head, length in used]
        for gpa, length in buffers:
            if length < HEADER_SIZE:
                raise AssertionError(f"the device used an rx buffer for {length} bytes")
            header = Header.decode(self.memory.read(gpa, HEADER_SIZE))
            payload = b""
            if payloads:
                payload = self.memory.read(gpa + HEADER_SIZE, length - HEADER_SIZE)
            self.received.append(Packet(header, payload))
        for gpa, _ in buffers:
            self._post_rx(gpa)
        if used:
            self.rx.publish()
        return len(used)

    def recv(self, timeout: float = 5.0) -> Packet:
        """The next packet from the device."""
        deadline = time.monotonic() + timeout
        while not self.received:
            if self.poll():
                break
            self.rx.driver.arm_interrupt()
            if self.poll():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet from the device")
            self.rx.wait_call(remaining)
        return self.received.popleft()

    def expect(self, op: Op, timeout: float = 5.0) -> Packet:
        """The next packet, which must be `op`."""
        packet = self.recv(timeout)
        if packet.op != op:
            raise AssertionError(f"expected {op.name}, got {packet.header.describe()}")
        return packet

    def quiet(self, seconds: float = 0.2) -> list[Packet]:
        """Everything the device sends within `seconds` (to check it sends nothing)."""
        packets = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                packets.append(self.recv(remaining))
            except TimeoutError:
                break
        return packets
