"""The device: virtio-console with one port (port 0, the console) and MULTIPORT, so the
guest learns of the port through the control queues (virtio spec 5.3.6.2)::

    driver → DEVICE_READY      device → PORT_ADD(0)
    driver → PORT_READY(0)     device → CONSOLE_PORT(0), PORT_NAME(0), RESIZE(0), PORT_OPEN(0)
    driver → PORT_OPEN(0, 0|1) (the guest opened or closed hvc0)

Queues: 0 port 0 receiveq (host → guest), 1 port 0 transmitq, 2 control receiveq,
3 control transmitq. Every control packet is hostile input: checked, bounded, logged.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    BackendError,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from .host import Host

log = logging.getLogger(__name__)

VIRTIO_ID_CONSOLE = 3
F_SIZE = 1 << 0
F_MULTIPORT = 1 << 1
F_EMERG_WRITE = 1 << 2

RX, TX, CTRL_RX, CTRL_TX = range(4)

DEVICE_READY = 0
DEVICE_ADD = 1  # PORT_ADD
DEVICE_REMOVE = 2
PORT_READY = 3
CONSOLE_PORT = 4
RESIZE = 5
PORT_OPEN = 6
PORT_NAME = 7

CONTROL = struct.Struct("<IHH")  # id, event, value
CONFIG = struct.Struct("<HHII")  # cols, rows, max_nr_ports, emerg_wr
EMERG_WR_OFFSET = 8
PORT_NAME_TEXT = b"org.vhost-device.console.0"
#: Control packets waiting for the guest's control rx buffers; a guest that repeats
#: DEVICE_READY without taking them cannot grow this beyond the bound.
MAX_PENDING_CONTROL = 32
TX_BATCH = 16


class ConsoleBackend(VhostUserBackend):
    name = "vhost-device-console"
    num_queues = 4
    features = STANDARD_FEATURES | F_MULTIPORT | F_EMERG_WRITE
    protocol_features = ProtocolFeature.MQ

    def __init__(self, host: Host, max_queue_size: int = 128) -> None:
        self.host = host
        self.max_queue_size = max_queue_size
        if host.size() is not None:
            self.features = self.features | F_SIZE
        self._vrings: Sequence[Vring] = ()
        self._worker: Worker | None = None
        self._input = bytearray()  # host bytes not yet in an rx buffer (one read at most)
        self._control: deque[bytes] = deque()
        self.port_ready = False
        self.guest_open = False

    # -- lifecycle -------------------------------------------------------------------

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self._vrings, self._worker = vrings, workers[0]
        self.host.start(workers[0], self)

    def reset(self) -> None:
        self._input.clear()
        self._control.clear()
        self.port_ready = self.guest_open = False

    def close(self) -> None:
        self.host.stop()

    def config_space(self) -> bytes:
        cols, rows = self.host.size() or (0, 0)
        return CONFIG.pack(cols, rows, 1, 0)

    def set_config(self, offset: int, data: bytes) -> None:
        """Only emerg_wr is writable: its low byte goes out at once, handshake or not."""
        if offset != EMERG_WR_OFFSET or not 1 <= len(data) <= 4:
            raise BackendError(f"config write at {offset} ({len(data)} bytes): only emerg_wr")
        char = data[:1]
        if self._worker is not None:
            self._worker.call_soon(lambda: self._emergency(char))

    def _emergency(self, char: bytes) -> None:
        self.host.send(char)

    # -- queues ------------------------------------------------------------------------

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == RX:
            self._fill_rx()
        elif vring.index == TX:
            self._drain_tx()
        elif vring.index == CTRL_RX:
            self._flush_control()
        else:
            self._read_control(vring)

    def _ring(self, index: int) -> Vring | None:
        vring = self._vrings[index] if index < len(self._vrings) else None
        return vring if vring is not None and vring.active else None

    def _drain_tx(self) -> None:
        vring = self._ring(TX)
        if vring is None:
            return
        for batch in vring.batches(TX_BATCH):
            room = True
            for chain in batch:
                room = self.host.send(chain.read()) and room
            vring.complete(batch, [0] * len(batch))
            if not room:  # the host's buffer is full: host_drained() resumes us
                return

    def _fill_rx(self) -> None:
        vring = self._ring(RX)
        while self._input:
            if vring is None:  # not running: read no more until the guest kicks rx
                self.host.pause_input()
                return
            batch = vring.poll(1)
            if not batch:
                if vring.enable_notification():
                    continue  # a buffer came while kicks were off
                self.host.pause_input()  # the guest's kick resumes us
                return
            (chain,) = batch
            written = chain.write(self._input)
            vring.complete(batch, [written])
            if written == 0:
                log.warning("rx buffer %d has no room; the byte waits", chain.head)
                continue
            del self._input[:written]
        self.host.resume_input()

    # -- the Port interface (the host's calls, on the worker) -------------------------

    def host_input(self, data: bytes) -> None:
        self._input += data
        self._fill_rx()

    def host_drained(self) -> None:
        self._drain_tx()

    def host_resized(self, cols: int, rows: int) -> None:
        if self.port_ready:
            self._send_control(0, RESIZE, 0, struct.pack("<HH", rows, cols))

    # -- the control queues ----------------------------------------------------------

    def _send_control(self, port: int, event: int, value: int, extra: bytes = b"") -> None:
        if len(self._control) >= MAX_PENDING_CONTROL:
            log.warning("control packet %d dropped: the guest takes none", event)
            return
        self._control.append(CONTROL.pack(port, event, value) + extra)
        self._flush_control()

    def _flush_control(self) -> None:
        vring = self._ring(CTRL_RX)
        while self._control and vring is not None:
            batch = vring.poll(1)
            if not batch:
                if vring.enable_notification():
                    continue
                return
            (chain,) = batch
            packet = self._control.popleft()
            if chain.writable_len < len(packet):
                log.warning("control rx buffer %d too small: packet dropped", chain.head)
                vring.complete(batch, [0])
                continue
            vring.complete(batch, [chain.write(packet)])

    def _read_control(self, vring: Vring) -> None:
        for batch in vring.batches():
            for chain in batch:
                self._control_packet(chain.read(CONTROL.size))
            vring.complete(batch, [0] * len(batch))

    def _control_packet(self, packet: bytes) -> None:
        if len(packet) < CONTROL.size:
            log.warning("control packet of %d bytes ignored", len(packet))
            return
        port, event, value = CONTROL.unpack(packet)
        if event == DEVICE_READY:
            if value != 1:
                log.warning("the guest driver failed to set up (DEVICE_READY %d)", value)
                return
            self._send_control(0, DEVICE_ADD, 0)
        elif port != 0:
            log.warning("control event %d for port %d ignored: there is only port 0", event, port)
        elif event == PORT_READY:
            if value != 1:
                log.warning("the guest could not add port 0")
                return
            self.port_ready = True
            self._send_control(0, CONSOLE_PORT, 1)
            self._send_control(0, PORT_NAME, 0, PORT_NAME_TEXT)
            size = self.host.size()
            if size is not None:
                self.host_resized(*size)
            self._send_control(0, PORT_OPEN, 1)
        elif event == PORT_OPEN:
            self.guest_open = value == 1
            log.info("the guest %s port 0", "opened" if self.guest_open else "closed")
        else:
            log.warning("control event %d from the guest ignored", event)
