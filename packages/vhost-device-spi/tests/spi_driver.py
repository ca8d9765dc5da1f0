"""The virtio-spi driver's side, played over the core's frontend: requests laid out as
the spec (and drivers/spi/spi-virtio.c) lay them out, head / tx / rx / result, each in
its own descriptor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_device_spi.device import SpiBackend
from vhost_device_spi.host import Controller
from vhost_device_spi.protocol import CONFIG_SIZE, Result, TransferHead
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import connected_frontend

QUEUE_SIZE = 1024


def head(**fields: int) -> TransferHead:
    """A head as Linux's driver fills it for an 8-bit, mode-0 device, with `fields`."""
    values = dict(
        chip_select_id=0,
        bits_per_word=8,
        cs_change=0,
        tx_nbits=0,
        rx_nbits=0,
        mode=0,
        freq=1_000_000,
    )
    values.update(fields)
    return TransferHead(**values)


@dataclass
class Posted:
    head: int  # descriptor index
    rx_gpa: int
    rx_len: int
    result_gpa: int


@dataclass(frozen=True)
class Answer:
    result: int
    rx: bytes
    used: int


class SpiDriver:
    def __init__(self, frontend: Frontend) -> None:
        self.frontend = frontend
        (self.queue,) = frontend.queues
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.posted: list[Posted] = []

    @property
    def q(self) -> FrontendQueue:
        return self.queue

    def put(self, data: bytes) -> int:
        gpa = self.ram.alloc(max(len(data), 1))
        self.ram.memory.write(gpa, data)
        return gpa

    def post(self, th: TransferHead | bytes, tx: bytes | None, rx_len: int) -> Posted:
        """Queue one transfer (not yet visible to the device: publish())."""
        raw = th.encode() if isinstance(th, TransferHead) else th
        buffers = [(self.put(raw), len(raw), False)]
        if tx is not None:
            buffers.append((self.put(tx), len(tx), False))
        rx_gpa = self.ram.alloc(max(rx_len, 1))
        self.ram.memory.write(rx_gpa, b"\xee" * rx_len)  # to see what the device wrote
        if rx_len:
            buffers.append((rx_gpa, rx_len, True))
        result_gpa = self.put(b"\xff")
        buffers.append((result_gpa, 1, True))
        posted = Posted(self.queue.driver.add(buffers), rx_gpa, rx_len, result_gpa)
        self.posted.append(posted)
        return posted

    def publish(self) -> None:
        self.queue.publish()

    def answers(self) -> list[Answer]:
        """Wait for every posted request; answers in posting order."""
        used = dict(self.queue.wait_used(len(self.posted)))
        out = [
            Answer(
                self.ram.memory.read(p.result_gpa, 1)[0],
                self.ram.memory.read(p.rx_gpa, p.rx_len),
                used[p.head],
            )
            for p in self.posted
        ]
        self.posted = []
        return out

    def transfer(self, th: TransferHead | bytes, tx: bytes | None, rx_len: int) -> Answer:
        self.post(th, tx, rx_len)
        self.publish()
        (answer,) = self.answers()
        return answer

    def config(self) -> bytes:
        return self.frontend.get_config(0, CONFIG_SIZE)


@contextmanager
def spi_driver(controller: Controller, tmp_path: Path) -> Iterator[SpiDriver]:
    with connected_frontend(lambda: SpiBackend(controller), tmp_path / "spi.sock") as frontend:
        frontend.start_device(1, QUEUE_SIZE)
        yield SpiDriver(frontend)


OK, PARAM_ERR, TRANS_ERR = Result.TRANS_OK, Result.PARAM_ERR, Result.TRANS_ERR
