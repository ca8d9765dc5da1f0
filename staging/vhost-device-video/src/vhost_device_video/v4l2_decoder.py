"""The v4l2-decoder backend: each stream opens the V4L2 stateful mem2mem decoder
(the kernel's dev-decoder interface; vicodec is the test peer) and follows its
sequence: coded format on OUTPUT, bitstream buffers in, SOURCE_CHANGE, then the
decoded format read from CAPTURE, capture buffers allocated, frames out; a drain is
V4L2_DEC_CMD_STOP and ends with the buffer flagged LAST.

Buffers are the decoder's MMAP buffers: a guest input is copied in before QBUF, a
decoded frame copied out into the guest resource after DQBUF (guest pages are not
handed to the kernel as USERPTR yet). Completions come from the device fd, watched
in the worker's epoll through an epoll of our own, which asks for EPOLLPRI
(events) always and for EPOLLIN/EPOLLOUT only while the kernel holds buffers: a
mem2mem fd with nothing queued polls as EPOLLERR, which would spin a level-
triggered loop.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import select
from collections import deque
from pathlib import Path

from vhost_user_core import GuestMemoryError, Worker

from . import v4l2
from .errors import V4l2Error
from .formats import plane_formats
from .host import MemoryRef, StreamEvents
from .protocol import (
    BufferFlag,
    CommandError,
    Control,
    Crop,
    Format,
    FormatDesc,
    FormatFrame,
    Params,
    PlaneFormat,
    QueueType,
    Range,
    Resp,
)
from .resource import Resource

log = logging.getLogger(__name__)

CODED_FOURCC = {
    Format.FWHT: "FWHT",
    Format.H264: "H264",
    Format.HEVC: "HEVC",
    Format.VP8: "VP80",
    Format.VP9: "VP90",
    Format.MPEG2: "MPG2",
    Format.MPEG4: "MPG4",
}
RAW_FOURCC = {Format.YUV420: "YU12", Format.YVU420: "YV12", Format.NV12: "NV12"}
INPUT_BUFFERS = 8
CAPTURE_BUFFERS = 8
DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480

OUT, CAP = v4l2.BUF_TYPE_VIDEO_OUTPUT, v4l2.BUF_TYPE_VIDEO_CAPTURE


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise V4l2Error(f"cannot open {path}: {exc.strerror}", path, exc.errno or 0) from exc


class V4l2Backend:
    """The decoder at `path`, probed once: what it decodes, to what."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = _open(path)
        try:
            try:
                cap = v4l2.querycap(fd)
            except OSError as exc:
                raise V4l2Error(f"{path} is not a V4L2 device", path, exc.errno or 0) from exc
            caps = cap.device_caps if cap.capabilities & v4l2.CAP_DEVICE_CAPS else cap.capabilities
            if not caps & v4l2.CAP_VIDEO_M2M or not caps & v4l2.CAP_STREAMING:
                raise V4l2Error(
                    f"{path} ({cap.card.decode(errors='replace')}) is not a single-planar "
                    "V4L2 mem2mem device",
                    path,
                )
            try:
                coded = {d.pixelformat for d in v4l2.enum_formats(fd, OUT)}
                raw = {d.pixelformat for d in v4l2.enum_formats(fd, CAP)}
                self.coded = [f for f, c in CODED_FOURCC.items() if v4l2.fourcc(c) in coded]
                self.raw = [f for f, c in RAW_FOURCC.items() if v4l2.fourcc(c) in raw]
                self.frames = {f: self._frames(fd, f) for f in self.coded}
            except OSError as exc:
                raise V4l2Error(f"{path}: {exc.strerror}", path, exc.errno or 0) from exc
        finally:
            os.close(fd)
        if not self.coded or not self.raw:
            raise V4l2Error(f"{path} is not a decoder of a format virtio-video names", path)
        log.info(
            "%s decodes %s to %s",
            path,
            ", ".join(f.name for f in self.coded),
            ", ".join(f.name for f in self.raw),
        )

    @staticmethod
    def _frames(fd: int, fmt: Format) -> tuple[FormatFrame, ...]:
        size = v4l2.frame_sizes(fd, v4l2.fourcc(CODED_FOURCC[fmt]))
        if size is None:
            return (FormatFrame(Range(1, 4096, 1), Range(1, 4096, 1)),)
        if size.type == v4l2.FRMSIZE_TYPE_DISCRETE:
            w, h = size.u.discrete
            return (FormatFrame(Range.one(w), Range.one(h)),)
        s = size.u.stepwise
        return (FormatFrame(Range(s.min_w, s.max_w, s.step_w), Range(s.min_h, s.max_h, s.step_h)),)

    def capabilities(self, queue: QueueType) -> list[FormatDesc]:
        if queue == QueueType.INPUT:
            mask = (1 << len(self.raw)) - 1
            return [FormatDesc(f, mask, frames=self.frames[f]) for f in self.coded]
        mask = (1 << len(self.coded)) - 1
        return [FormatDesc(f, mask, plane_align=1) for f in self.raw]

    def controls(self, fmt: Format) -> dict[Control, tuple[int, ...]]:
        return {}  # the draft's controls (bitrate, profile, level) are not mapped yet

    def open_stream(
        self, coded_format: Format, events: StreamEvents, memory: MemoryRef, worker: Worker
    ) -> V4l2Decoder:
        return V4l2Decoder(self.path, coded_format, self.raw[0], events, memory, worker)

    def close(self) -> None:
        pass


class _Queue:
    """One V4L2 queue's MMAP buffers and which guest resource each one carries."""

    def __init__(self, buf_type: int) -> None:
        self.type = buf_type
        self.maps: list[mmap.mmap] = []
        self.free: deque[int] = deque()
        self.owner: dict[int, int] = {}  # v4l2 index -> guest resource id
        self.streaming = False

    def allocate(self, fd: int, count: int) -> None:
        got = v4l2.request_buffers(fd, self.type, count)
        for index in range(got):
            buf = v4l2.query_buffer(fd, self.type, index)
            self.maps.append(
                mmap.mmap(
                    fd,
                    buf.length,
                    mmap.MAP_SHARED,
                    mmap.PROT_READ | mmap.PROT_WRITE,
                    offset=buf.m.offset,
                )
            )
        self.free = deque(range(got))

    def release(self, fd: int) -> None:
        self.stop(fd)
        for m in self.maps:
            m.close()
        self.maps, self.free = [], deque()
        v4l2.request_buffers(fd, self.type, 0)

    def start(self, fd: int) -> None:
        if not self.streaming:
            v4l2.stream(fd, self.type, True)
            self.streaming = True

    def stop(self, fd: int) -> None:
        """STREAMOFF gives every buffer back (the kernel's cancel): all are free."""
        if self.streaming:
            v4l2.stream(fd, self.type, False)
            self.streaming = False
        self.owner.clear()
        self.free = deque(range(len(self.maps)))


class V4l2Decoder:
    def __init__(
        self,
        path: Path,
        coded: Format,
        raw: Format,
        events: StreamEvents,
        memory: MemoryRef,
        worker: Worker,
    ) -> None:
        self.path, self.coded, self.raw = path, coded, raw
        self.events, self.memory, self.worker = events, memory, worker
        self.fd = _open(path)
        self.input, self.capture = _Queue(OUT), _Queue(CAP)
        self.waiting_inputs: deque[tuple[Resource, int, int]] = deque()
        self.waiting_outputs: deque[Resource] = deque()
        self.outputs: dict[int, Resource] = {}
        self.stamps: dict[int, int] = {}  # the V4L2 timestamp we set -> the guest's
        self._next_stamp = 1
        self.drain_wanted = False
        self.eos_pending = False
        self.closed = False
        self.poller = select.epoll()
        self._mask = 0
        try:
            pix = v4l2.PixFormat(
                width=DEFAULT_WIDTH,
                height=DEFAULT_HEIGHT,
                pixelformat=v4l2.fourcc(CODED_FOURCC[coded]),
                sizeimage=DEFAULT_WIDTH * DEFAULT_HEIGHT * 3,
            )
            self.in_fmt = v4l2.set_format(self.fd, OUT, pix)
            raw_pix = v4l2.PixFormat(pixelformat=v4l2.fourcc(RAW_FOURCC[raw]))
            v4l2.set_format(self.fd, CAP, raw_pix)
            self.cap_fmt = v4l2.get_format(self.fd, CAP)
            v4l2.subscribe(self.fd, v4l2.EVENT_SOURCE_CHANGE)
            v4l2.subscribe(self.fd, v4l2.EVENT_EOS)
        except OSError as exc:
            os.close(self.fd)
            self.poller.close()
            raise V4l2Error(f"{path}: {exc.strerror}", path, exc.errno or 0) from exc
        self.poller.register(self.fd, select.EPOLLPRI)
        worker.add_reader(self.poller.fileno(), self._service)

    # -- params ----------------------------------------------------------------------

    def get_params(self, queue: QueueType) -> Params:
        if queue == QueueType.INPUT:
            f = self.in_fmt
            return Params(
                QueueType.INPUT,
                self.coded,
                f.width,
                f.height,
                1,
                INPUT_BUFFERS,
                Crop(0, 0, f.width, f.height),
                30,
                (PlaneFormat(f.sizeimage, 0),),
            )
        f = self.cap_fmt
        planes = plane_formats(self.raw, f.width, f.height)
        if f.bytesperline and f.bytesperline != planes[0].stride:
            log.debug("capture stride %d, planes computed for %d", f.bytesperline, planes[0].stride)
        return Params(
            QueueType.OUTPUT,
            self.raw,
            f.width,
            f.height,
            1,
            CAPTURE_BUFFERS,
            Crop(0, 0, f.width, f.height),
            30,
            planes,
        )

    def set_params(self, params: Params) -> None:
        try:
            if params.queue_type == QueueType.INPUT:
                if params.format != self.coded:
                    raise CommandError(Resp.ERR_INVALID_PARAMETER, "the coded format is fixed")
                if self.input.maps:
                    raise CommandError(Resp.ERR_INVALID_OPERATION, "input buffers exist")
                size = params.plane_formats[0].plane_size if params.plane_formats else 0
                pix = v4l2.PixFormat(
                    width=params.frame_width or DEFAULT_WIDTH,
                    height=params.frame_height or DEFAULT_HEIGHT,
                    pixelformat=v4l2.fourcc(CODED_FOURCC[self.coded]),
                    sizeimage=size,
                )
                self.in_fmt = v4l2.set_format(self.fd, OUT, pix)
                return
            if params.format not in RAW_FOURCC:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, f"{params.format.name} not offered")
            if params.format == self.raw:
                return
            if self.capture.maps:
                raise CommandError(Resp.ERR_INVALID_OPERATION, "output buffers exist")
            pix = v4l2.get_format(self.fd, CAP)
            pix.pixelformat = v4l2.fourcc(RAW_FOURCC[params.format])
            got = v4l2.set_format(self.fd, CAP, pix)
            if got.pixelformat != pix.pixelformat:
                raise CommandError(Resp.ERR_INVALID_PARAMETER, f"{params.format.name} refused")
            self.raw, self.cap_fmt = params.format, got
        except OSError as exc:
            raise CommandError(Resp.ERR_INVALID_PARAMETER, f"S_FMT: {exc.strerror}") from exc

    # -- buffers ---------------------------------------------------------------------

    def queue(
        self, queue: QueueType, resource: Resource, timestamp: int, data_sizes: tuple[int, ...]
    ) -> None:
        try:
            if queue == QueueType.INPUT:
                self.waiting_inputs.append((resource, timestamp, data_sizes[0]))
                self._submit_inputs()
            else:
                self.waiting_outputs.append(resource)
                self._submit_outputs()
        except OSError as exc:
            self._fail(f"QBUF: {exc.strerror}")
        self._watch()

    def _submit_inputs(self) -> None:
        q = self.input
        if not q.maps:
            q.allocate(self.fd, INPUT_BUFFERS)
        q.start(self.fd)
        while self.waiting_inputs and q.free:
            resource, timestamp, size = self.waiting_inputs.popleft()
            index = q.free.popleft()
            target = q.maps[index]
            try:
                data = resource.read(self.memory.get(), 0, min(size, len(target)))
            except GuestMemoryError as exc:
                log.warning("input %d: %s", resource.id, exc)
                q.free.appendleft(index)
                self.events.done(QueueType.INPUT, resource.id, timestamp, BufferFlag.ERR)
                continue
            target[: len(data)] = data
            stamp = self._stamp(timestamp)
            q.owner[index] = resource.id
            v4l2.queue_buffer(self.fd, OUT, index, len(data), stamp)
        if self.drain_wanted and not self.waiting_inputs:
            self.drain_wanted = False
            v4l2.decoder_command(self.fd, v4l2.DEC_CMD_STOP)

    def _stamp(self, timestamp: int) -> int:
        stamp = self._next_stamp
        self._next_stamp += 1
        self.stamps[stamp] = timestamp
        while len(self.stamps) > 4 * (INPUT_BUFFERS + CAPTURE_BUFFERS):
            self.stamps.pop(next(iter(self.stamps)))
        return stamp

    def _submit_outputs(self) -> None:
        if self.eos_pending and self.waiting_outputs:
            self.eos_pending = False
            resource = self.waiting_outputs.popleft()
            self.events.done(QueueType.OUTPUT, resource.id, 0, BufferFlag.EOS)
        q = self.capture
        if not q.streaming:
            return  # until SOURCE_CHANGE says what frames are
        while self.waiting_outputs and q.free:
            resource = self.waiting_outputs.popleft()
            index = q.free.popleft()
            q.owner[index] = resource.id
            self.outputs[resource.id] = resource
            v4l2.queue_buffer(self.fd, CAP, index)

    def drain(self) -> None:
        try:
            if not self.input.streaming:
                self.eos_pending = True  # nothing was decoded: the next output is the EOS
                self._submit_outputs()
            elif self.waiting_inputs:
                self.drain_wanted = True
            else:
                v4l2.decoder_command(self.fd, v4l2.DEC_CMD_STOP)
        except OSError as exc:
            self._fail(f"DECODER_CMD STOP: {exc.strerror}")
        self._watch()

    def clear(self, queue: QueueType) -> None:
        self.drain_wanted = self.eos_pending = False
        try:
            if queue == QueueType.INPUT:
                self.waiting_inputs.clear()
                self.input.stop(self.fd)
            else:
                self.waiting_outputs.clear()
                self.outputs.clear()
                if self.capture.streaming:
                    self.capture.stop(self.fd)
                    self.capture.start(self.fd)
        except OSError as exc:
            self._fail(f"STREAMOFF: {exc.strerror}")
        self._watch()

    def destroy_all(self, queue: QueueType) -> None:
        self.clear(queue)
        try:
            (self.input if queue == QueueType.INPUT else self.capture).release(self.fd)
        except OSError as exc:
            self._fail(f"REQBUFS 0: {exc.strerror}")

    # -- what the kernel says --------------------------------------------------------

    def _watch(self) -> None:
        """Ask for IN/OUT only while the kernel holds a buffer (see the docstring)."""
        if self.closed:
            return
        busy = bool(self.input.owner or self.capture.owner)
        mask = select.EPOLLPRI | (select.EPOLLIN | select.EPOLLOUT if busy else 0)
        if mask != self._mask:
            self.poller.modify(self.fd, mask)
            self._mask = mask

    def _service(self) -> None:
        self.poller.poll(0)  # consume the readiness; the work below is non-blocking
        try:
            while (event := v4l2.dequeue_event(self.fd)) is not None:
                if event.type == v4l2.EVENT_SOURCE_CHANGE:
                    self._source_changed()
            while (buf := v4l2.dequeue_buffer(self.fd, OUT)) is not None:
                self._input_done(buf)
            while (buf := v4l2.dequeue_buffer(self.fd, CAP)) is not None:
                self._frame_done(buf)
            if not self.closed:
                if self.waiting_inputs:
                    self._submit_inputs()
                self._submit_outputs()
        except OSError as exc:
            self._fail(f"{exc.strerror} ({errno.errorcode.get(exc.errno or 0, '?')})")
        self._watch()

    def _source_changed(self) -> None:
        """New stream metadata: (re)allocate CAPTURE for the frames the decoder states."""
        if self.capture.maps:
            # Held guest outputs go back to waiting; they are queued again below.
            waiting = [self.outputs[r] for r in self.capture.owner.values() if r in self.outputs]
            self.capture.release(self.fd)
            self.waiting_outputs.extendleft(reversed(waiting))
        self.cap_fmt = v4l2.get_format(self.fd, CAP)
        self.in_fmt = v4l2.get_format(self.fd, OUT)
        log.info("%s: %dx%d frames", self.path, self.cap_fmt.width, self.cap_fmt.height)
        self.capture.allocate(self.fd, CAPTURE_BUFFERS)
        self.capture.start(self.fd)
        self.events.resolution_changed()

    def _input_done(self, buf: v4l2.Buffer) -> None:
        rid = self.input.owner.pop(buf.index, None)
        self.input.free.append(buf.index)
        if rid is None:
            return
        flags = BufferFlag.ERR if buf.flags & v4l2.BUF_FLAG_ERROR else BufferFlag(0)
        self.events.done(QueueType.INPUT, rid, self.stamps.get(buf.timestamp.tv_sec, 0), flags)

    def _frame_done(self, buf: v4l2.Buffer) -> None:
        rid = self.capture.owner.pop(buf.index, None)
        self.capture.free.append(buf.index)
        resource = self.outputs.pop(rid, None) if rid is not None else None
        last = bool(buf.flags & v4l2.BUF_FLAG_LAST)
        if resource is None:
            return
        flags = BufferFlag.ERR if buf.flags & v4l2.BUF_FLAG_ERROR else BufferFlag(0)
        if buf.bytesused:
            flags |= self._copy_frame(
                resource, memoryview(self.capture.maps[buf.index])[: buf.bytesused]
            )
        if last:
            flags |= BufferFlag.EOS
            v4l2.decoder_command(self.fd, v4l2.DEC_CMD_START)  # the decoder goes on
        stamp = self.stamps.get(buf.timestamp.tv_sec, 0) if buf.bytesused else 0
        self.events.done(QueueType.OUTPUT, resource.id, stamp, flags)

    def _copy_frame(self, resource: Resource, frame: memoryview) -> BufferFlag:
        """The frame's planes into the guest's resource; ERR if they do not fit."""
        params = self.get_params(QueueType.OUTPUT)
        at = 0
        try:
            memory = self.memory.get()
            for plane, fmt in enumerate(params.plane_formats):
                data = frame[at : at + fmt.plane_size]
                at += fmt.plane_size
                if resource.write(memory, plane, data) != len(data):
                    return BufferFlag.ERR
        except (GuestMemoryError, IndexError) as exc:
            log.warning("output %d: %s", resource.id, exc)
            return BufferFlag.ERR
        return BufferFlag(0)

    def _fail(self, why: str) -> None:
        log.warning("%s: %s", self.path, why)
        self.events.error(why)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.remove_reader(self.poller.fileno())
        self.poller.close()
        for q in (self.input, self.capture):
            for m in q.maps:
                m.close()
        os.close(self.fd)
