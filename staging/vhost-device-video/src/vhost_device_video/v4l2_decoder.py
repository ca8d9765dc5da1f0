"""The v4l2-decoder backend: each stream opens the V4L2 stateful mem2mem decoder
(the kernel's dev-decoder interface; vicodec is the test peer) and follows its
sequence: coded format on OUTPUT, bitstream buffers in, SOURCE_CHANGE, then the
decoded format read from CAPTURE, capture buffers allocated, frames out; a drain is
V4L2_DEC_CMD_STOP and ends with the buffer flagged LAST.

Buffers are USERPTR: where a guest resource is one range of guest memory big enough
for the decoder (and, for a frame, with its planes where V4L2's single-planar layout
puts them), the kernel reads the bitstream from, or writes the frame into, the
guest's pages themselves; otherwise the buffer is a bounce buffer of ours, copied
into before QBUF or out of after DQBUF. Completions come from the device fd, watched
in the worker's epoll through an epoll of our own, which asks for EPOLLPRI
(events) always and for EPOLLIN/EPOLLOUT only while the kernel holds buffers: a
mem2mem fd with nothing queued polls as EPOLLERR, which would spin a level-
triggered loop.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import select
from collections import deque
from pathlib import Path

from vhost_user_core import GuestMemory, GuestMemoryError, Worker

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
    PlanesLayout,
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


class _Slot:
    """One V4L2 buffer: the guest resource it carries and the memory handed to the
    kernel, which is the guest's own pages or the slot's bounce buffer."""

    def __init__(self, size: int) -> None:
        self.bounce = mmap.mmap(-1, size)  # anonymous, page-aligned, ours
        self.resource: Resource | None = None
        self.direct: memoryview | None = None  # a view of guest memory while queued
        self._pin: object = None  # the ctypes export whose address the kernel holds

    def address(self, view: memoryview | mmap.mmap) -> int:
        pin = ctypes.c_char.from_buffer(view)
        self._pin = pin
        return ctypes.addressof(pin)

    def drop_direct(self) -> None:
        """Back to the bounce buffer: the guest's pages are no longer referenced."""
        self._pin = None  # first: a view with an export cannot be released
        if self.direct is not None:
            self.direct.release()
        self.direct = None

    def unpin(self) -> None:
        self.drop_direct()
        self._pin, self.resource = None, None

    def close(self) -> None:
        self.unpin()
        self.bounce.close()


class _Queue:
    """One V4L2 queue's USERPTR buffers (slots) and which of them the kernel holds."""

    def __init__(self, buf_type: int) -> None:
        self.type = buf_type
        self.slots: list[_Slot] = []
        self.size = 0  # sizeimage when the buffers were requested: a buffer's least length
        self.free: deque[int] = deque()
        self.streaming = False

    @property
    def busy(self) -> bool:
        return len(self.free) < len(self.slots)

    def allocate(self, fd: int, count: int, size: int) -> None:
        got = v4l2.request_buffers(fd, self.type, count, v4l2.MEMORY_USERPTR)
        self.size = size
        self.slots = [_Slot(size) for _ in range(got)]
        self.free = deque(range(got))

    def release(self, fd: int) -> None:
        self.stop(fd)
        for slot in self.slots:
            slot.close()
        self.slots, self.free = [], deque()
        v4l2.request_buffers(fd, self.type, 0, v4l2.MEMORY_USERPTR)

    def start(self, fd: int) -> None:
        if not self.streaming:
            v4l2.stream(fd, self.type, True)
            self.streaming = True

    def stop(self, fd: int) -> None:
        """STREAMOFF gives every buffer back (the kernel's cancel): all are free."""
        if self.streaming:
            v4l2.stream(fd, self.type, False)
            self.streaming = False
        for slot in self.slots:
            slot.unpin()
        self.free = deque(range(len(self.slots)))

    def held(self) -> list[Resource]:
        return [s.resource for s in self.slots if s.resource is not None]


def _contiguous(memory: GuestMemory, resource: Resource, length: int) -> memoryview | None:
    """A view of the resource's first `length` bytes if they are one range of guest
    memory inside one region (what the kernel can take as a USERPTR buffer)."""
    entries, offset = resource.planes[0], resource.plane_offsets[0] if resource.plane_offsets else 0
    if len(entries) != 1 or entries[0].length - offset < length:
        return None
    try:
        return memory.view(entries[0].addr + offset, entries[0].length - offset)
    except GuestMemoryError:
        return None


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
        #: Buffers the kernel read or wrote in guest pages, and those copied through ours.
        self.direct = {QueueType.INPUT: 0, QueueType.OUTPUT: 0}
        self.bounced = {QueueType.INPUT: 0, QueueType.OUTPUT: 0}
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
                if self.input.slots:
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
            if self.capture.slots:
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
        if not q.slots:
            q.allocate(self.fd, INPUT_BUFFERS, self.in_fmt.sizeimage)
        q.start(self.fd)
        while self.waiting_inputs and q.free:
            resource, timestamp, size = self.waiting_inputs.popleft()
            index = q.free.popleft()
            slot = q.slots[index]
            stamp = self._stamp(timestamp)
            slot.resource = resource
            try:
                memory = self.memory.get()
                slot.direct = _contiguous(memory, resource, max(size, q.size))
                if slot.direct is not None and self._queue_direct(q, index, size, stamp):
                    self.direct[QueueType.INPUT] += 1
                    continue
                data = resource.read(memory, 0, min(size, q.size))
            except GuestMemoryError as exc:
                log.warning("input %d: %s", resource.id, exc)
                slot.unpin()
                q.free.appendleft(index)
                self.events.done(QueueType.INPUT, resource.id, timestamp, BufferFlag.ERR)
                continue
            slot.bounce[: len(data)] = data
            address = slot.address(slot.bounce)
            v4l2.queue_userptr(self.fd, OUT, index, address, q.size, len(data), stamp)
            self.bounced[QueueType.INPUT] += 1
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
            slot = q.slots[index]
            slot.resource = resource
            slot.direct = self._frame_view(resource)
            if slot.direct is None or not self._queue_direct(q, index, 0, 0):
                v4l2.queue_userptr(self.fd, CAP, index, slot.address(slot.bounce), q.size, 0, 0)

    def _queue_direct(self, q: _Queue, index: int, bytesused: int, stamp: int) -> bool:
        """QBUF the slot's guest pages; False (the slot back to its bounce buffer) if
        the kernel will not take them, e.g. pages it cannot pin."""
        slot = q.slots[index]
        view = slot.direct
        assert view is not None
        try:
            address = slot.address(view)
            v4l2.queue_userptr(self.fd, q.type, index, address, len(view), bytesused, stamp)
        except OSError as exc:
            log.info("%s: guest pages refused as a buffer (%s); copying", self.path, exc.strerror)
            slot.drop_direct()
            return False
        return True

    def _frame_view(self, resource: Resource) -> memoryview | None:
        """The guest's pages, if the kernel can write the frame into them as it is:
        one range, planes where V4L2's single-planar layout puts them."""
        planes = self.get_params(QueueType.OUTPUT).plane_formats
        starts, at = [], 0
        for plane in planes:
            starts.append(at)
            at += plane.plane_size
        layout_fits = resource.layout == PlanesLayout.SINGLE_BUFFER and (
            tuple(resource.plane_offsets[: len(planes)]) == tuple(starts)
        )
        if not layout_fits:
            return None
        try:
            return _contiguous(self.memory.get(), resource, max(at, self.capture.size))
        except GuestMemoryError:
            return None

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
        busy = self.input.busy or self.capture.busy
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
            while (buf := v4l2.dequeue_buffer(self.fd, OUT, v4l2.MEMORY_USERPTR)) is not None:
                self._input_done(buf)
            while (buf := v4l2.dequeue_buffer(self.fd, CAP, v4l2.MEMORY_USERPTR)) is not None:
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
        if self.capture.slots:
            # Held guest outputs go back to waiting; they are queued again below.
            waiting = self.capture.held()
            self.capture.release(self.fd)
            self.waiting_outputs.extendleft(reversed(waiting))
        self.cap_fmt = v4l2.get_format(self.fd, CAP)
        self.in_fmt = v4l2.get_format(self.fd, OUT)
        log.info("%s: %dx%d frames", self.path, self.cap_fmt.width, self.cap_fmt.height)
        self.capture.allocate(self.fd, CAPTURE_BUFFERS, self.cap_fmt.sizeimage)
        self.capture.start(self.fd)
        self.events.resolution_changed()

    def _input_done(self, buf: v4l2.Buffer) -> None:
        slot = self.input.slots[buf.index]
        resource = slot.resource
        slot.unpin()
        self.input.free.append(buf.index)
        if resource is None:
            return
        flags = BufferFlag.ERR if buf.flags & v4l2.BUF_FLAG_ERROR else BufferFlag(0)
        stamp = self.stamps.get(buf.timestamp.tv_sec, 0)
        self.events.done(QueueType.INPUT, resource.id, stamp, flags)

    def _frame_done(self, buf: v4l2.Buffer) -> None:
        slot = self.capture.slots[buf.index]
        resource, direct = slot.resource, slot.direct is not None
        if resource is not None and buf.bytesused and not direct:
            frame = memoryview(slot.bounce)[: buf.bytesused]
            flags = self._copy_frame(resource, frame)
            frame.release()
        else:
            flags = BufferFlag(0)
        slot.unpin()
        self.capture.free.append(buf.index)
        if buf.flags & v4l2.BUF_FLAG_LAST:
            flags |= BufferFlag.EOS
            v4l2.decoder_command(self.fd, v4l2.DEC_CMD_START)  # the decoder goes on
        if resource is None:
            return
        if buf.bytesused:
            (self.direct if direct else self.bounced)[QueueType.OUTPUT] += 1
        if buf.flags & v4l2.BUF_FLAG_ERROR:
            flags |= BufferFlag.ERR
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
        os.close(self.fd)  # the kernel lets go of every buffer it held
        for q in (self.input, self.capture):
            for slot in q.slots:
                slot.close()
