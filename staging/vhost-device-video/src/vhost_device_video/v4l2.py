"""A small typed ctypes layer over the V4L2 ioctls a stateful mem2mem decoder needs.

Only what `v4l2_decoder` uses, with the x86-64/aarch64 (LP64) layouts of
<linux/videodev2.h>: single-planar formats and buffers, MMAP buffers, events and
decoder commands. Every call raises OSError as the kernel returned it; the caller
wraps it (V4l2Error) at its boundary.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
from ctypes import c_int32, c_uint8, c_uint32, c_uint64

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


def fourcc(code: str) -> int:
    a, b, c, d = code.encode()
    return a | b << 8 | c << 16 | d << 24


def fourcc_text(value: int) -> str:
    return bytes((value >> s) & 0xFF for s in (0, 8, 16, 24)).decode("latin-1")


BUF_TYPE_VIDEO_CAPTURE = 1
BUF_TYPE_VIDEO_OUTPUT = 2
MEMORY_MMAP = 1
MEMORY_USERPTR = 2
FIELD_NONE = 1
CAP_VIDEO_M2M = 0x00008000
CAP_VIDEO_M2M_MPLANE = 0x00004000
CAP_STREAMING = 0x04000000
CAP_DEVICE_CAPS = 0x80000000
FMT_FLAG_COMPRESSED = 0x0001
BUF_FLAG_ERROR = 0x00000040
BUF_FLAG_LAST = 0x00100000
BUF_FLAG_TIMESTAMP_COPY = 0x00004000
EVENT_EOS = 2
EVENT_SOURCE_CHANGE = 5
DEC_CMD_START = 0
DEC_CMD_STOP = 1
FRMSIZE_TYPE_DISCRETE = 1


class Capability(ctypes.Structure):
    _fields_ = [
        ("driver", ctypes.c_char * 16),
        ("card", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("version", c_uint32),
        ("capabilities", c_uint32),
        ("device_caps", c_uint32),
        ("reserved", c_uint32 * 3),
    ]


class FmtDesc(ctypes.Structure):
    _fields_ = [
        ("index", c_uint32),
        ("type", c_uint32),
        ("flags", c_uint32),
        ("description", ctypes.c_char * 32),
        ("pixelformat", c_uint32),
        ("mbus_code", c_uint32),
        ("reserved", c_uint32 * 3),
    ]


class PixFormat(ctypes.Structure):
    _fields_ = [
        ("width", c_uint32),
        ("height", c_uint32),
        ("pixelformat", c_uint32),
        ("field", c_uint32),
        ("bytesperline", c_uint32),
        ("sizeimage", c_uint32),
        ("colorspace", c_uint32),
        ("priv", c_uint32),
        ("flags", c_uint32),
        ("ycbcr_enc", c_uint32),
        ("quantization", c_uint32),
        ("xfer_func", c_uint32),
    ]


class _FormatUnion(ctypes.Union):
    _fields_ = [("pix", PixFormat), ("raw_data", c_uint8 * 200), ("_align", c_uint64)]


class Format(ctypes.Structure):
    _fields_ = [("type", c_uint32), ("fmt", _FormatUnion)]


class FrmSizeStepwise(ctypes.Structure):
    _fields_ = [(n, c_uint32) for n in ("min_w", "max_w", "step_w", "min_h", "max_h", "step_h")]


class _FrmSizeUnion(ctypes.Union):
    _fields_ = [("discrete", c_uint32 * 2), ("stepwise", FrmSizeStepwise)]


class FrmSizeEnum(ctypes.Structure):
    _fields_ = [
        ("index", c_uint32),
        ("pixel_format", c_uint32),
        ("type", c_uint32),
        ("u", _FrmSizeUnion),
        ("reserved", c_uint32 * 2),
    ]


class RequestBuffers(ctypes.Structure):
    _fields_ = [
        ("count", c_uint32),
        ("type", c_uint32),
        ("memory", c_uint32),
        ("capabilities", c_uint32),
        ("flags", c_uint8),
        ("reserved", c_uint8 * 3),
    ]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_usec", ctypes.c_int64)]


class Timecode(ctypes.Structure):
    _fields_ = [
        ("type", c_uint32),
        ("flags", c_uint32),
        ("frames", c_uint8),
        ("seconds", c_uint8),
        ("minutes", c_uint8),
        ("hours", c_uint8),
        ("userbits", c_uint8 * 4),
    ]


class _BufferM(ctypes.Union):
    _fields_ = [("offset", c_uint32), ("userptr", ctypes.c_ulong), ("fd", c_int32)]


class Buffer(ctypes.Structure):
    _fields_ = [
        ("index", c_uint32),
        ("type", c_uint32),
        ("bytesused", c_uint32),
        ("flags", c_uint32),
        ("field", c_uint32),
        ("timestamp", Timeval),
        ("timecode", Timecode),
        ("sequence", c_uint32),
        ("memory", c_uint32),
        ("m", _BufferM),
        ("length", c_uint32),
        ("reserved2", c_uint32),
        ("request_fd", c_int32),
    ]


class EventSubscription(ctypes.Structure):
    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("flags", c_uint32),
        ("reserved", c_uint32 * 5),
    ]


class _EventUnion(ctypes.Union):
    _fields_ = [("data", c_uint8 * 64), ("changes", c_uint32), ("_align", c_uint64)]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class Event(ctypes.Structure):
    _fields_ = [
        ("type", c_uint32),
        ("u", _EventUnion),
        ("pending", c_uint32),
        ("sequence", c_uint32),
        ("timestamp", Timespec),
        ("id", c_uint32),
        ("reserved", c_uint32 * 8),
    ]


class DecoderCmd(ctypes.Structure):
    _fields_ = [("cmd", c_uint32), ("flags", c_uint32), ("raw", c_uint64 * 8)]


QUERYCAP = _ioc(_IOC_READ, 0, ctypes.sizeof(Capability))
ENUM_FMT = _ioc(_IOC_READ | _IOC_WRITE, 2, ctypes.sizeof(FmtDesc))
G_FMT = _ioc(_IOC_READ | _IOC_WRITE, 4, ctypes.sizeof(Format))
S_FMT = _ioc(_IOC_READ | _IOC_WRITE, 5, ctypes.sizeof(Format))
REQBUFS = _ioc(_IOC_READ | _IOC_WRITE, 8, ctypes.sizeof(RequestBuffers))
QUERYBUF = _ioc(_IOC_READ | _IOC_WRITE, 9, ctypes.sizeof(Buffer))
QBUF = _ioc(_IOC_READ | _IOC_WRITE, 15, ctypes.sizeof(Buffer))
DQBUF = _ioc(_IOC_READ | _IOC_WRITE, 17, ctypes.sizeof(Buffer))
STREAMON = _ioc(_IOC_WRITE, 18, ctypes.sizeof(c_int32))
STREAMOFF = _ioc(_IOC_WRITE, 19, ctypes.sizeof(c_int32))
ENUM_FRAMESIZES = _ioc(_IOC_READ | _IOC_WRITE, 74, ctypes.sizeof(FrmSizeEnum))
DQEVENT = _ioc(_IOC_READ, 89, ctypes.sizeof(Event))
SUBSCRIBE_EVENT = _ioc(_IOC_WRITE, 90, ctypes.sizeof(EventSubscription))
DECODER_CMD = _ioc(_IOC_READ | _IOC_WRITE, 96, ctypes.sizeof(DecoderCmd))

# The LP64 sizes <linux/videodev2.h> gives; a wrong layout would send a wrong ioctl.
assert (ctypes.sizeof(Capability), ctypes.sizeof(Format), ctypes.sizeof(Buffer)) == (104, 208, 88)
assert (ctypes.sizeof(Event), ctypes.sizeof(DecoderCmd), ctypes.sizeof(FrmSizeEnum)) == (
    136,
    72,
    44,
)


def ioctl(fd: int, request: int, arg: ctypes.Structure | ctypes.c_int32) -> None:
    fcntl.ioctl(fd, request, arg, True)


def querycap(fd: int) -> Capability:
    cap = Capability()
    ioctl(fd, QUERYCAP, cap)
    return cap


def enum_formats(fd: int, buf_type: int) -> list[FmtDesc]:
    out: list[FmtDesc] = []
    while True:
        desc = FmtDesc(index=len(out), type=buf_type)
        try:
            ioctl(fd, ENUM_FMT, desc)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return out
            raise
        out.append(desc)


def frame_sizes(fd: int, pixelformat: int) -> FrmSizeEnum | None:
    size = FrmSizeEnum(index=0, pixel_format=pixelformat)
    try:
        ioctl(fd, ENUM_FRAMESIZES, size)
    except OSError:
        return None
    return size


def get_format(fd: int, buf_type: int) -> PixFormat:
    fmt = Format(type=buf_type)
    ioctl(fd, G_FMT, fmt)
    pix: PixFormat = fmt.fmt.pix
    return pix


def set_format(fd: int, buf_type: int, pix: PixFormat) -> PixFormat:
    fmt = Format(type=buf_type)
    fmt.fmt.pix = pix
    ioctl(fd, S_FMT, fmt)
    got: PixFormat = fmt.fmt.pix
    return got


def request_buffers(fd: int, buf_type: int, count: int, memory: int = MEMORY_MMAP) -> int:
    req = RequestBuffers(count=count, type=buf_type, memory=memory)
    ioctl(fd, REQBUFS, req)
    return int(req.count)


def query_buffer(fd: int, buf_type: int, index: int) -> Buffer:
    buf = Buffer(index=index, type=buf_type, memory=MEMORY_MMAP)
    ioctl(fd, QUERYBUF, buf)
    return buf


def queue_buffer(fd: int, buf_type: int, index: int, bytesused: int = 0, stamp: int = 0) -> None:
    buf = Buffer(index=index, type=buf_type, memory=MEMORY_MMAP, bytesused=bytesused)
    buf.field = FIELD_NONE
    buf.timestamp.tv_sec = stamp
    ioctl(fd, QBUF, buf)


def queue_userptr(
    fd: int, buf_type: int, index: int, address: int, length: int, bytesused: int, stamp: int
) -> None:
    """QBUF a USERPTR buffer: `length` bytes at `address` in this process."""
    buf = Buffer(index=index, type=buf_type, memory=MEMORY_USERPTR, bytesused=bytesused)
    buf.field = FIELD_NONE
    buf.timestamp.tv_sec = stamp
    buf.m.userptr = address
    buf.length = length
    ioctl(fd, QBUF, buf)


def dequeue_buffer(fd: int, buf_type: int, memory: int = MEMORY_MMAP) -> Buffer | None:
    """The next done buffer, or None if none is (EAGAIN; EPIPE after the last one)."""
    buf = Buffer(type=buf_type, memory=memory)
    try:
        ioctl(fd, DQBUF, buf)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EPIPE, errno.EINVAL):
            return None
        raise
    return buf


def stream(fd: int, buf_type: int, on: bool) -> None:
    ioctl(fd, STREAMON if on else STREAMOFF, c_int32(buf_type))


def subscribe(fd: int, event_type: int) -> None:
    ioctl(fd, SUBSCRIBE_EVENT, EventSubscription(type=event_type))


def dequeue_event(fd: int) -> Event | None:
    event = Event()
    try:
        ioctl(fd, DQEVENT, event)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return event


def decoder_command(fd: int, cmd: int) -> None:
    ioctl(fd, DECODER_CMD, DecoderCmd(cmd=cmd))
