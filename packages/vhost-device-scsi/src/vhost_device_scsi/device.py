"""The virtio-scsi transport: queues, request framing, task management, completion.

The control queue answers task management and asynchronous-notification requests, the
event queue's buffers stay with the ring (no events are ever sent: the LUNs are fixed),
and each request queue frames its chains into commands for the emulated target
(`scsi`). A command that needs image I/O becomes a `Pending` run by the I/O pool; it
completes on the worker when the pool signals, in whatever order the I/O finishes.
Plain reads and writes that need not wait are answered before any of this, in C
(`_fastpath`, the request queues' `fast_path`); the rest comes here in order.
"""

from __future__ import annotations

import errno
import logging
import struct
from collections.abc import Sequence

from vhost_user_core import (
    STANDARD_FEATURES,
    BackendError,
    DescriptorChain,
    ProtocolFeature,
    VhostUserBackend,
    Vring,
    Worker,
)

from . import virtio
from ._fastpath import RequestFastPath
from .blockio import IoPool
from .host import Image
from .scsi import codec
from .scsi.codec import Sense, Status
from .scsi.lun import BlockIo, IoKind, Reply
from .scsi.target import Target, decode_or_reply
from .virtio import (
    CONTROLQ,
    EVENTQ,
    FIRST_REQUESTQ,
    REQ_HEAD,
    RESP_HEAD,
    CmdRequest,
    CmdResponse,
    LunError,
    Response,
    Tmf,
)

log = logging.getLogger(__name__)

FEATURES = STANDARD_FEATURES | virtio.VIRTIO_SCSI_F_HOTPLUG | virtio.VIRTIO_SCSI_F_CHANGE
DEFAULT_IO_THREADS = 4
#: I/O up to this size that cannot wait runs inline; bigger copies go to the pool,
#: where several overlap (measured: 1 MiB sequential on tmpfs, ~1 GB/s inline, 2-3 pooled).
INLINE_MAX = 128 * 1024

_WRITE_ERRNOS = {
    errno.ENOSPC: codec.SPACE_ALLOCATION_FAILED,
    errno.EDQUOT: codec.SPACE_ALLOCATION_FAILED,
}
_PROTECT_ERRNOS = (errno.EROFS, errno.EBADF, errno.EPERM, errno.EACCES)


def _split(views: Sequence[memoryview], skip: int, length: int) -> list[memoryview]:
    """The bytes [skip, skip + length) of a chain's buffers, as views."""
    out: list[memoryview] = []
    for view in views:
        if skip >= len(view):
            skip -= len(view)
            continue
        piece = view[skip : skip + length]
        skip = 0
        out.append(piece)
        length -= len(piece)
        if not length:
            break
    return out


def _io_sense(io: BlockIo, exc: OSError) -> Sense:
    if exc.errno in _WRITE_ERRNOS and io.kind is not IoKind.READ:
        return _WRITE_ERRNOS[exc.errno]
    if exc.errno in _PROTECT_ERRNOS and io.kind is not IoKind.READ:
        return codec.WRITE_PROTECTED
    return codec.UNRECOVERED_READ_ERROR if io.kind is IoKind.READ else codec.WRITE_ERROR


class Pending:
    """A command whose I/O is with the pool: what its completion needs."""

    __slots__ = (
        "vring",
        "chain",
        "key",
        "lun",
        "tag",
        "io",
        "image",
        "views",
        "resid",
        "aborted",
        "sense",
    )

    def __init__(
        self,
        vring: Vring,
        chain: DescriptorChain,
        lun: int,
        tag: int,
        io: BlockIo,
        image: Image,
        views: list[memoryview],
        resid: int,
    ) -> None:
        self.vring = vring
        self.chain = chain  # kept: its views pin the guest memory they point into
        self.key = (vring.index, chain.head)
        self.lun = lun
        self.tag = tag
        self.io = io
        self.image = image
        self.views = views
        self.resid = resid
        self.aborted = False
        self.sense: Sense | None = None

    def run(self) -> None:
        """On a pool thread."""
        io, image = self.io, self.image
        try:
            if io.kind is IoKind.READ:
                image.readinto(self.views, io.offset)
            elif io.kind is IoKind.WRITE:
                image.write(self.views, io.offset)
                if io.fua:
                    image.sync()
            elif io.kind is IoKind.SYNC:
                image.sync()
            elif io.kind is IoKind.DISCARD:
                for offset, length in io.ranges:
                    image.discard(offset, length)
            else:
                image.fill(io.offset, io.length, io.pattern)
        except OSError as exc:
            log.warning("%s: %s at %d failed: %s", image.name, io.kind.value, io.offset, exc)
            self.sense = _io_sense(io, exc)


class HeldTmf:
    """A task management function waiting for the commands it aborts to complete
    (the driver may reuse their buffers once the TMF is answered)."""

    __slots__ = ("vring", "head", "waiting")

    def __init__(self, vring: Vring, head: int, waiting: set[tuple[int, int]]) -> None:
        self.vring = vring
        self.head = head
        self.waiting = waiting


class ScsiBackend(VhostUserBackend):
    name = "vhost-device-scsi"
    max_queue_size = virtio.QUEUE_SIZE
    features = FEATURES
    # INFLIGHT_SHMFD: requests complete out of order, so a restarted daemon learns
    # which ones were in flight from the region QEMU keeps (the core's inflight).
    protocol_features = ProtocolFeature.MQ | ProtocolFeature.INFLIGHT_SHMFD

    def __init__(
        self,
        target: Target,
        images: Sequence[Image],
        *,
        request_queues: int = 1,
        io_threads: int = DEFAULT_IO_THREADS,
        fast: bool = True,
    ) -> None:
        self.target = target
        self.images = list(images)
        self.request_queues = request_queues
        self.num_queues = virtio.FIRST_REQUESTQ + request_queues
        self.io_threads = io_threads
        self.cdb_size = virtio.CDB_SIZE
        self.sense_size = virtio.SENSE_SIZE
        self.pool: IoPool | None = None
        self.pending: dict[tuple[int, int], Pending] = {}
        self.held: list[HeldTmf] = []
        #: The request queues' C fast path (`_fastpath`); off, every command is Python's.
        self.fast = fast
        #: Each request queue's fast path, the latest `fast_path` gave (by queue index).
        self.fast_paths: dict[int, RequestFastPath] = {}

    # -- config space -----------------------------------------------------------------

    def config_space(self) -> bytes:
        return virtio.ScsiConfigSpace(
            self.request_queues, sense_size=self.sense_size, cdb_size=self.cdb_size
        ).encode()

    def set_config(self, offset: int, data: bytes) -> None:
        """The driver may write sense_size and cdb_size (§5.6.4); nothing else."""
        end = offset + len(data)
        if (
            offset < virtio.CONFIG_SENSE_SIZE
            or end > virtio.CONFIG_CDB_SIZE + 4
            or offset % 4
            or len(data) % 4
        ):
            raise BackendError(f"config write [{offset}, {end}) outside sense_size/cdb_size")
        for at in range(offset, end, 4):
            (value,) = struct.unpack_from("<I", data, at - offset)
            if at == virtio.CONFIG_SENSE_SIZE:
                if not 18 <= value <= virtio.MAX_SENSE_SIZE:
                    raise BackendError(f"sense_size {value} outside 18..{virtio.MAX_SENSE_SIZE}")
                self.sense_size = value
            else:
                if not 16 <= value <= virtio.MAX_CDB_SIZE:
                    raise BackendError(f"cdb_size {value} outside 16..{virtio.MAX_CDB_SIZE}")
                self.cdb_size = value

    # -- lifecycle ----------------------------------------------------------------------

    def attach(self, workers: Sequence[Worker], vrings: Sequence[Vring]) -> None:
        self.pool = IoPool(self.io_threads)
        workers[0].add_reader(self.pool.fd, self._completions)

    def queue_stopped(self, vring: Vring) -> None:
        # The ring's base is read as it stops: every command popped from it must be
        # back on its used ring first, so its I/O is waited for here.
        if self.pool is not None and self.pending:
            self.pool.wait_idle()
            self._completions()
        for tmf in [t for t in self.held if t.vring is vring]:
            self.held.remove(tmf)
            self._answer_tmf(tmf.vring, tmf.head)
        path = self.fast_paths.get(vring.index)
        if path is not None:
            log.debug("queue %d: %d commands answered by the fast path", vring.index, path.served)

    def reset(self) -> None:
        self.cdb_size = virtio.CDB_SIZE
        self.sense_size = virtio.SENSE_SIZE

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def fast_path(self, vring: Vring) -> RequestFastPath | None:
        if not self.fast or vring.index < FIRST_REQUESTQ:
            return None
        luns = []
        for image in self.images:
            fd, in_memory = image.direct_io() or (-1, False)
            luns.append((fd, image.block_size, image.read_only, in_memory))
        path = self.fast_paths[vring.index] = RequestFastPath(self, luns, INLINE_MAX)
        return path

    def handle_queue(self, vring: Vring) -> None:
        if vring.index == CONTROLQ:
            self._control(vring)
        elif vring.index == EVENTQ:
            return  # no events to report: the buffers wait on the ring
        else:
            for batch in vring.batches():
                for chain in batch:
                    self._command(vring, chain)

    # -- request queues -----------------------------------------------------------------

    def _respond(
        self, vring: Vring, chain: DescriptorChain, response: CmdResponse, data_in: int = 0
    ) -> None:
        written = chain.write(response.encode(self.sense_size))
        vring.complete_one(chain.head, written + data_in if written else 0)

    def _command(self, vring: Vring, chain: DescriptorChain) -> None:
        resp_size = RESP_HEAD.size + self.sense_size
        req_size = REQ_HEAD.size + self.cdb_size
        if chain.error is not None or chain.writable_len < resp_size:
            log.warning(
                "queue %d: request %d unusable: %s",
                vring.index,
                chain.head,
                chain.error or f"{chain.writable_len} writable bytes, {resp_size} needed",
            )
            vring.complete_one(chain.head, 0)
            return
        try:
            req = CmdRequest.decode(chain.read(req_size), self.cdb_size)
            target, lun = virtio.decode_lun(req.lun)
        except LunError as exc:
            log.debug("queue %d: %s", vring.index, exc)
            self._respond(vring, chain, CmdResponse(exc.response))
            return
        except ValueError as exc:
            log.warning("queue %d: %s", vring.index, exc)
            self._respond(vring, chain, CmdResponse(Response.FAILURE))
            return
        if target != 0:
            self._respond(vring, chain, CmdResponse(Response.BAD_TARGET))
            return
        data_in = chain.writable_len - resp_size
        data_out = chain.readable_len - req_size
        cmd = decode_or_reply(req.cdb)
        if isinstance(cmd, Reply):
            self._reply(vring, chain, cmd, data_in)
            return
        if lun < 0 and not isinstance(
            cmd, (codec.ReportLuns, codec.Inquiry, codec.RequestSense, codec.TestUnitReady)
        ):
            self._reply(vring, chain, Reply.check(codec.LUN_NOT_SUPPORTED), data_in)
            return
        # No INOUT feature: data goes one way, and a READ or WRITE brings room for all.
        direction = _direction(cmd)
        need = (
            cmd.blocks * self.target.disks[lun].block_size
            if isinstance(cmd, codec.Rw) and self.target.disk(lun)
            else 0
        )
        if (
            (direction == "in" and (data_out or data_in < need))
            or (direction == "out" and (data_in or data_out < need))
            or (direction == "none" and data_in and data_out)
        ):
            log.debug(
                "queue %d: %s with %d in, %d out: overrun", vring.index, cmd, data_in, data_out
            )
            self._respond(vring, chain, CmdResponse(Response.OVERRUN))
            return
        outcome = self.target.execute(lun, cmd, lambda n: chain.read(req_size + n)[req_size:])
        if isinstance(outcome, Reply):
            self._reply(vring, chain, outcome, data_in)
            return
        image = self.images[lun]
        if outcome.kind is IoKind.READ:
            views = _split(chain.writable_views(), resp_size, outcome.length)
            resid = data_in - outcome.length
            if outcome.length <= INLINE_MAX and image.read_cached(views, outcome.offset):
                # Cached data needs no thread: a pool round trip costs more than this.
                response = CmdResponse(Response.OK, Status.GOOD, b"", resid)
                self._respond(vring, chain, response, outcome.length)
                return
        elif outcome.kind is IoKind.WRITE:
            views = _split(chain.readable_views(), req_size, outcome.length)
            resid = data_out - outcome.length
            small = outcome.length <= INLINE_MAX
            if small and not outcome.fua and image.write_cached(views, outcome.offset):
                self._respond(vring, chain, CmdResponse(Response.OK, Status.GOOD, b"", resid))
                return
        else:
            views, resid = [], 0
        job = Pending(vring, chain, lun, req.tag, outcome, image, views, resid)
        self.pending[job.key] = job
        assert self.pool is not None
        self.pool.submit(job)

    def _reply(self, vring: Vring, chain: DescriptorChain, reply: Reply, data_in: int) -> None:
        resp_size = RESP_HEAD.size + self.sense_size
        data = reply.data[:data_in]
        written = chain.write(data, resp_size) if data else 0
        sense = reply.sense.encode() if reply.sense is not None else b""
        self._respond(
            vring, chain, CmdResponse(Response.OK, reply.status, sense, data_in - written), written
        )

    def _completions(self) -> None:
        assert self.pool is not None
        for job in self.pool.take():
            assert isinstance(job, Pending)
            self.pending.pop(job.key, None)
            if job.vring.ready:
                self._finish(job)
            # else the ring was reset under it: the guest no longer waits for it
            for tmf in list(self.held):
                tmf.waiting.discard(job.key)
                if not tmf.waiting:
                    self.held.remove(tmf)
                    self._answer_tmf(tmf.vring, tmf.head)

    def _finish(self, job: Pending) -> None:
        """Return a command whose I/O the pool has done (or skipped: aborted)."""
        data = 0
        if job.aborted:
            response = CmdResponse(Response.ABORTED)
        elif job.sense is not None:
            sense = job.sense.encode()
            response = CmdResponse(Response.OK, Status.CHECK_CONDITION, sense, job.resid)
        else:
            response = CmdResponse(Response.OK, Status.GOOD, b"", job.resid)
            data = job.io.length if job.io.kind is IoKind.READ else 0
        self._respond(job.vring, job.chain, response, data)

    # -- control queue ------------------------------------------------------------------

    def _control(self, vring: Vring) -> None:
        for batch in vring.batches():
            for chain in batch:
                self._control_request(vring, chain)

    def _answer_tmf(self, vring: Vring, head: int) -> None:
        """Return a held TMF, whose response byte is already written."""
        if vring.ready:
            vring.complete_one(head, 1)

    def _control_request(self, vring: Vring, chain: DescriptorChain) -> None:
        data = chain.read(virtio.TMF_REQ.size)
        if chain.error is not None or len(data) < 4 or chain.writable_len < 1:
            vring.complete_one(chain.head, 0)
            return
        (kind,) = struct.unpack_from("<I", data)
        if kind == virtio.ControlType.TMF:
            if len(data) < virtio.TMF_REQ.size:
                chain.write(bytes((Response.FAILURE,)))
                vring.complete_one(chain.head, 1)
                return
            _, subtype, lun_field, tag = virtio.TMF_REQ.unpack(data)
            response, affected = self._tmf(subtype, lun_field, tag)
            chain.write(bytes((response,)))
            waiting = set()
            for job in affected:
                job.aborted = True  # the pool skips it if it has not started yet
                waiting.add(job.key)
            if waiting:
                self.held.append(HeldTmf(vring, chain.head, waiting))
            else:
                vring.complete_one(chain.head, 1)
        elif kind in (virtio.ControlType.AN_QUERY, virtio.ControlType.AN_SUBSCRIBE):
            if len(data) < virtio.AN_REQ.size or chain.writable_len < virtio.AN_RESP.size:
                vring.complete_one(chain.head, chain.write(bytes((Response.FAILURE,))))
                return
            # No asynchronous notifications are supported: event_actual is 0.
            written = chain.write(virtio.AN_RESP.pack(0, Response.OK))
            vring.complete_one(chain.head, written)
        else:
            log.debug("control request type %d", kind)
            vring.complete_one(chain.head, chain.write(bytes((Response.FAILURE,))))

    def _tmf(self, subtype: int, lun_field: bytes, tag: int) -> tuple[Response, list[Pending]]:
        """A TMF's response and the pending commands it aborts."""
        try:
            target, lun = virtio.decode_lun(lun_field)
        except LunError:
            return Response.BAD_TARGET, []
        if target != 0:
            return Response.BAD_TARGET, []
        if subtype == Tmf.I_T_NEXUS_RESET:
            return virtio.FUNCTION_COMPLETE, list(self.pending.values())
        if self.target.disk(lun) is None:
            return Response.INCORRECT_LUN, []
        on_lun = [p for p in self.pending.values() if p.lun == lun]
        tagged = [p for p in on_lun if p.tag == tag]
        if subtype == Tmf.ABORT_TASK:
            return virtio.FUNCTION_COMPLETE, tagged
        if subtype in (Tmf.ABORT_TASK_SET, Tmf.CLEAR_TASK_SET, Tmf.LOGICAL_UNIT_RESET):
            return virtio.FUNCTION_COMPLETE, on_lun
        if subtype == Tmf.QUERY_TASK:
            return (Response.FUNCTION_SUCCEEDED if tagged else virtio.FUNCTION_COMPLETE), []
        if subtype == Tmf.QUERY_TASK_SET:
            return (Response.FUNCTION_SUCCEEDED if on_lun else virtio.FUNCTION_COMPLETE), []
        return Response.FUNCTION_REJECTED, []  # CLEAR ACA (no NACA) and unknown ones


def _direction(cmd: codec.Command) -> str:
    if isinstance(cmd, codec.Rw):
        return "out" if cmd.write else "in"
    if isinstance(cmd, codec.Unmap) or (isinstance(cmd, codec.WriteSame) and not cmd.ndob):
        return "out"
    if isinstance(cmd, (codec.TestUnitReady, codec.SyncCache, codec.WriteSame)):
        return "none"
    return "in"
