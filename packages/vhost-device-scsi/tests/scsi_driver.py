"""The guest driver's side of virtio-scsi over the core's frontend, for the tests: one
command or TMF at a time, or several in flight."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vhost_device_scsi.device import ScsiBackend
from vhost_device_scsi.host import Image, MemoryImage
from vhost_device_scsi.scsi.lun import Disk
from vhost_device_scsi.scsi.target import Target
from vhost_device_scsi.virtio import (
    REQ_HEAD,
    RESP_HEAD,
    SENSE_SIZE,
    TMF_REQ,
    CmdRequest,
    CmdResponse,
    encode_lun,
)
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.harness import connected_frontend

RESP_SIZE = RESP_HEAD.size + SENSE_SIZE


@dataclass
class Sent:
    """A command posted and not yet waited for."""

    head: int
    resp: int
    data: int
    data_len: int


class ScsiDriver:
    def __init__(self, frontend: Frontend, queues: list[FrontendQueue]) -> None:
        self.frontend = frontend
        self.queues = queues
        assert frontend.ram is not None
        self.ram = frontend.ram
        self._tag = 0

    def post(
        self,
        cdb: bytes,
        *,
        lun: int = 0,
        data_out: bytes = b"",
        data_in: int = 0,
        queue: int = 2,
        lun_field: bytes | None = None,
        tag: int | None = None,
        header: bytes | None = None,
        resp_room: int = RESP_SIZE,
    ) -> Sent:
        """Post one command (not kicked: `publish` does); its buffers come in the
        spec's order (header, data-out, response, data-in)."""
        if tag is None:
            self._tag += 1
            tag = self._tag
        if header is None:
            field = encode_lun(0, lun) if lun_field is None else lun_field
            header = CmdRequest(field, tag, 0, 0, 0, cdb).encode()
        mem = self.ram.memory
        chain = []
        req = self.ram.alloc(len(header))
        mem.write(req, header)
        chain.append((req, len(header), False))
        if data_out:
            out = self.ram.alloc(len(data_out))
            mem.write(out, data_out)
            chain.append((out, len(data_out), False))
        resp = self.ram.alloc(max(resp_room, 1))
        mem.write(resp, bytes(max(resp_room, 1)))
        if resp_room:
            chain.append((resp, resp_room, True))
        data = self.ram.alloc(max(data_in, 1), 512)
        if data_in:
            chain.append((data, data_in, True))
        head = self.queues[queue].driver.add(chain)
        return Sent(head, resp, data, data_in)

    def publish(self, queue: int = 2) -> None:
        self.queues[queue].publish()

    def wait(self, count: int, queue: int = 2, timeout: float = 5.0) -> dict[int, int]:
        """Used entries {head: length} for `count` completions, in arrival order."""
        return dict(self.queues[queue].wait_used(count, timeout))

    def result(self, sent: Sent) -> tuple[CmdResponse, bytes]:
        mem = self.ram.memory
        response = CmdResponse.decode(mem.read(sent.resp, RESP_SIZE))
        got = sent.data_len - response.resid if sent.data_len else 0
        return response, mem.read(sent.data, max(got, 0)) if got > 0 else b""

    def command(self, cdb: bytes, **kw: object) -> tuple[CmdResponse, bytes]:
        """One command, waited for: its response and the data-in the device wrote."""
        queue = int(kw.get("queue", 2))  # type: ignore[call-overload]
        sent = self.post(cdb, **kw)  # type: ignore[arg-type]
        self.publish(queue)
        used = self.wait(1, queue)
        assert sent.head in used
        return self.result(sent)

    def tmf(
        self, subtype: int, *, lun: int = 0, tag: int = 0, lun_field: bytes | None = None
    ) -> Sent:
        field = encode_lun(0, lun) if lun_field is None else lun_field
        mem = self.ram.memory
        req = self.ram.alloc(TMF_REQ.size)
        mem.write(req, TMF_REQ.pack(0, subtype, field, tag))
        resp = self.ram.alloc(1)
        mem.write(resp, b"\xff")
        head = self.queues[0].driver.add([(req, TMF_REQ.size, False), (resp, 1, True)])
        self.queues[0].publish()
        return Sent(head, resp, 0, 0)

    def tmf_response(self, sent: Sent) -> int:
        return self.ram.memory.read(sent.resp, 1)[0]


def cdb10(op: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, blocks, 0)


def cdb16(op: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, blocks, 0, 0)


def cdb12(op: int, lba: int = 0, blocks: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">BBIIBB", op, flags, lba, blocks, 0, 0)


def cdb6(op: int, lba: int = 0, blocks: int = 0) -> bytes:
    return struct.pack(">BBHBB", op, (lba >> 16) & 0x1F, lba & 0xFFFF, blocks, 0)


def backend_for(images: list[Image], *, solid_state: bool = False, queues: int = 1) -> ScsiBackend:
    target = Target([Disk(img, i, solid_state=solid_state) for i, img in enumerate(images)])
    return ScsiBackend(target, images, request_queues=queues)


@contextmanager
def scsi_driver(
    tmp_path: Path, images: list[Image] | None = None, *, queues: int = 1, solid_state: bool = False
) -> Iterator[ScsiDriver]:
    """A daemon serving `images` (default: one 1 MiB memory image) and its driver."""
    if images is None:
        images = [MemoryImage(1 << 20)]
    with connected_frontend(
        lambda: backend_for(images, solid_state=solid_state, queues=queues), tmp_path / "scsi.sock"
    ) as frontend:
        rings = frontend.start_device(2 + queues, 128, memory_size=64 << 20)
        yield ScsiDriver(frontend, rings)


__all__ = ["REQ_HEAD", "ScsiDriver", "scsi_driver", "cdb6", "cdb10", "cdb12", "cdb16"]
