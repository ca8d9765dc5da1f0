"""The v4l2-decoder backend against the real kernel: inside a hostkernel guest, the
kernel's vicodec (built out of tree, with v4l2-mem2mem, by testing.kmodules). Frames
are encoded by vicodec's own stateful encoder, decoded through the daemon from the
frontend, playing the draft's driver, and compared with the originals within FWHT's
loss; each frame must be nearer its own original than any other."""

from __future__ import annotations

import mmap
import operator
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from video_driver import (
    Driver,
    hdr,
    parse_capability,
    parse_header,
    parse_params,
    parse_queue_response,
    query_capability,
    queue_command,
    resource_create,
    resource_queue,
    stream_create,
)

from vhost_device_video import v4l2
from vhost_device_video.device import VideoBackend
from vhost_device_video.protocol import (
    BufferFlag,
    Cmd,
    EventType,
    Format,
    PlanesLayout,
    QueueType,
    Resp,
)
from vhost_device_video.v4l2_decoder import V4l2Backend, V4l2Decoder
from vhost_user_core.testing.harness import connected_frontend

pytestmark = pytest.mark.hostkernel("vicodec")

WIDTH, HEIGHT, FRAMES = 640, 480, 4  # vicodec's smallest frame is 640x360
IN, OUT = QueueType.INPUT, QueueType.OUTPUT


def _node(role: str) -> Path:
    """The vicodec node whose name says `role` (stateful-encoder / stateful-decoder)."""
    for entry in sorted(Path("/sys/class/video4linux").iterdir()):
        if role in (entry / "name").read_text():
            return Path("/dev") / entry.name
    raise AssertionError(f"no vicodec {role}: {os.listdir('/sys/class/video4linux')}")


def _frame(i: int) -> bytes:
    """A smooth YUV420 test picture, a different brightness and tint per frame."""
    base = bytes(x * 160 // WIDTH for x in range(WIDTH))
    shifted = {k: bytes(min(v + k, 255) for v in range(256)) for k in range(15 * i, 15 * i + 41)}
    y = b"".join(base.translate(shifted[15 * i + row * 40 // HEIGHT]) for row in range(HEIGHT))
    chroma = WIDTH * HEIGHT // 4
    return y + bytes([128 + 15 * i]) * chroma + bytes([128 - 15 * i]) * chroma


def _encode(frames: list[bytes]) -> list[bytes]:
    """Each frame through vicodec's stateful encoder (blocking, MMAP buffers)."""
    fd = os.open(_node("stateful-encoder"), os.O_RDWR)
    try:
        # The coded side first: setting it resets the raw side's size on vicodec.
        coded = v4l2.PixFormat(width=WIDTH, height=HEIGHT, pixelformat=v4l2.fourcc("FWHT"))
        v4l2.set_format(fd, v4l2.BUF_TYPE_VIDEO_CAPTURE, coded)
        raw = v4l2.PixFormat(width=WIDTH, height=HEIGHT, pixelformat=v4l2.fourcc("YU12"))
        got = v4l2.set_format(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, raw)
        assert (got.width, got.height) == (WIDTH, HEIGHT)
        maps = {}
        for buf_type in (v4l2.BUF_TYPE_VIDEO_OUTPUT, v4l2.BUF_TYPE_VIDEO_CAPTURE):
            v4l2.request_buffers(fd, buf_type, 1)
            buf = v4l2.query_buffer(fd, buf_type, 0)
            maps[buf_type] = mmap.mmap(fd, buf.length, offset=buf.m.offset)
            v4l2.stream(fd, buf_type, True)
        out = []
        for frame in frames:
            maps[v4l2.BUF_TYPE_VIDEO_OUTPUT][: len(frame)] = frame
            v4l2.queue_buffer(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT, 0, len(frame))
            v4l2.queue_buffer(fd, v4l2.BUF_TYPE_VIDEO_CAPTURE, 0)
            done = v4l2.dequeue_buffer(fd, v4l2.BUF_TYPE_VIDEO_CAPTURE)
            assert done is not None
            out.append(bytes(maps[v4l2.BUF_TYPE_VIDEO_CAPTURE][: done.bytesused]))
            assert v4l2.dequeue_buffer(fd, v4l2.BUF_TYPE_VIDEO_OUTPUT) is not None
        for m in maps.values():
            m.close()
        return out
    finally:
        os.close(fd)


def _mae(a: bytes, b: bytes, step: int = 1) -> float:
    """Mean absolute difference of every `step`-th sample."""
    assert len(a) == len(b)
    a, b = a[::step], b[::step]
    return sum(map(abs, map(operator.sub, a, b))) / len(a)


class Served(Driver):
    """The driver, and the device serving it (to see how its decoder moved bytes)."""

    backend: VideoBackend

    def decoder(self, stream_id: int) -> V4l2Decoder:
        decoder = self.backend.streams[stream_id].decoder
        assert isinstance(decoder, V4l2Decoder)
        return decoder


@pytest.fixture
def vicodec_driver(tmp_path: Path) -> Iterator[Served]:
    host = V4l2Backend(_node("stateful-decoder"))
    backends: list[VideoBackend] = []

    def factory() -> VideoBackend:
        backends.append(VideoBackend(host))
        return backends[-1]

    with connected_frontend(factory, tmp_path / "v.sock") as frontend:
        frontend.start_device(2, 1024, memory_size=64 << 20)
        served = Served(frontend)
        served.backend = backends[0]
        yield served


def test_vicodec_is_offered_as_fwht_to_yuv420(vicodec_driver: Served) -> None:
    driver = vicodec_driver
    inputs = parse_capability(driver.command(query_capability(IN)))
    outputs = parse_capability(driver.command(query_capability(OUT)))
    assert [d[0] for d in inputs] == [Format.FWHT]
    assert Format.YUV420 in [d[0] for d in outputs]


def test_frames_encoded_by_vicodec_decode_through_the_daemon(vicodec_driver: Served) -> None:
    driver = vicodec_driver
    originals = [_frame(i) for i in range(FRAMES)]
    coded = _encode(originals)
    assert all(0 < len(c) < len(originals[0]) for c in coded)
    driver.post_events()
    assert driver.status(stream_create(1, Format.FWHT)) == Resp.OK_NODATA
    for rid in range(FRAMES):
        gpa, room = driver.buffer(64 << 10)
        driver.ram.memory.write(gpa, coded[rid])
        assert driver.status(resource_create(1, IN, rid, [(gpa, room)])) == Resp.OK_NODATA
    inputs = [
        driver.post(resource_queue(1, IN, rid, timestamp=1000 + rid, sizes=[len(coded[rid])]))
        for rid in range(FRAMES)
    ]
    assert driver.events(1, timeout=30) == [(EventType.DECODER_RESOLUTION_CHANGED, 1)]
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    assert (params.format, params.frame_width, params.frame_height) == (
        Format.YUV420,
        WIDTH,
        HEIGHT,
    )
    size = sum(p.plane_size for p in params.plane_formats)
    assert size == len(originals[0])
    frames = {}
    for rid in range(FRAMES + 1):
        frames[rid] = driver.buffer(size)[0]
        offsets = [0, WIDTH * HEIGHT, WIDTH * HEIGHT * 5 // 4]
        request = resource_create(1, OUT, rid, [(frames[rid], size)], num_planes=3, offsets=offsets)
        assert driver.status(request) == Resp.OK_NODATA
    outputs = [driver.post(resource_queue(1, OUT, rid)) for rid in range(FRAMES)]
    decoded = []
    for head in outputs:
        kind, stamp, flags, _ = parse_queue_response(driver.response(head))
        assert (kind, flags) == (Resp.OK_RESOURCE_QUEUE, 0)
        decoded.append((stamp, bytes(driver.ram.memory.read(frames[outputs.index(head)], size))))
    for head, rid in zip(inputs, range(FRAMES), strict=True):
        assert parse_queue_response(driver.response(head))[1:3] == (1000 + rid, 0)
    assert [stamp for stamp, _ in decoded] == [1000 + i for i in range(FRAMES)]
    # The frames were written by the kernel into the guest's pages (one range each,
    # planes where V4L2 puts them); the 64 KiB inputs, under vicodec's sizeimage, went
    # through bounce buffers.
    decoder = driver.decoder(1)
    assert (decoder.direct[OUT], decoder.bounced[OUT]) == (FRAMES, 0)
    assert (decoder.direct[IN], decoder.bounced[IN]) == (0, FRAMES)
    for i, (_, frame) in enumerate(decoded):
        own = _mae(frame, originals[i])
        assert own < 3.0, f"frame {i} is {own:.2f} off its original"
        assert all(own < _mae(frame, other, 4) for j, other in enumerate(originals) if j != i)
    # A drain ends with the buffer V4L2 flags LAST: EOS, then the drain's own answer.
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    eos = driver.post(resource_queue(1, OUT, FRAMES))
    assert parse_queue_response(driver.response(eos))[2] & BufferFlag.EOS
    assert parse_header(driver.response(drain)) == (Resp.OK_NODATA, 1)
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 1)) == Resp.OK_NODATA


def test_clearing_returns_what_the_kernel_held(vicodec_driver: Served) -> None:
    driver = vicodec_driver
    assert driver.status(stream_create(1, Format.FWHT)) == Resp.OK_NODATA
    for rid in range(2):
        assert driver.status(resource_create(1, OUT, rid, [driver.buffer(1 << 17)])) == (
            Resp.OK_NODATA
        )
    held = [driver.post(resource_queue(1, OUT, rid)) for rid in range(2)]
    assert not driver.answered(held[0])
    assert driver.status(queue_command(Cmd.QUEUE_CLEAR, 1, OUT)) == Resp.OK_NODATA
    for head in held:
        assert parse_queue_response(driver.response(head))[2] == BufferFlag.ERR
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 1)) == Resp.OK_NODATA


def test_frames_into_per_plane_resources_are_copied(vicodec_driver: Served) -> None:
    """Planes in separate guest buffers cannot be one V4L2 buffer: the frame goes
    through a bounce buffer and is split into the resource's planes."""
    driver = vicodec_driver
    original = _frame(1)
    (coded,) = _encode([original])
    driver.post_events()
    assert driver.status(stream_create(1, Format.FWHT)) == Resp.OK_NODATA
    gpa, room = driver.buffer(2 << 20)  # over vicodec's sizeimage: read in place
    driver.ram.memory.write(gpa, coded)
    assert driver.status(resource_create(1, IN, 0, [(gpa, room)])) == Resp.OK_NODATA
    inp = driver.post(resource_queue(1, IN, 0, timestamp=7, sizes=[len(coded)]))
    assert driver.events(1, timeout=30) == [(EventType.DECODER_RESOLUTION_CHANGED, 1)]
    luma, chroma = WIDTH * HEIGHT, WIDTH * HEIGHT // 4
    planes = [driver.buffer(n) for n in (luma, chroma, chroma)]
    request = resource_create(
        1, OUT, 0, planes, layout=PlanesLayout.PER_PLANE, num_planes=3, counts=[1, 1, 1]
    )
    assert driver.status(request) == Resp.OK_NODATA
    out = driver.post(resource_queue(1, OUT, 0))
    assert parse_queue_response(driver.response(out))[1:3] == (7, 0)
    assert parse_queue_response(driver.response(inp))[1:3] == (7, 0)
    frame = b"".join(bytes(driver.ram.memory.read(a, n)) for a, n in planes)
    assert _mae(frame, original) < 3.0
    decoder = driver.decoder(1)
    assert (decoder.direct[IN], decoder.bounced[OUT]) == (1, 1)
