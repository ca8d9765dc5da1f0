"""Frame geometry shared by the backends: how big each plane of a raw format is."""

from __future__ import annotations

from .protocol import Crop, Format, Params, PlaneFormat, QueueType

#: Planes of each raw format, as (width divisor, height divisor, bytes per sample).
PLANES: dict[Format, tuple[tuple[int, int, int], ...]] = {
    Format.ARGB8888: ((1, 1, 4),),
    Format.BGRA8888: ((1, 1, 4),),
    Format.NV12: ((1, 1, 1), (2, 2, 2)),
    Format.YUV420: ((1, 1, 1), (2, 2, 1), (2, 2, 1)),
    Format.YVU420: ((1, 1, 1), (2, 2, 1), (2, 2, 1)),
}


def plane_formats(fmt: Format, width: int, height: int) -> tuple[PlaneFormat, ...]:
    """Each plane's size and stride for a `width` x `height` frame of raw `fmt`."""
    out = []
    for wdiv, hdiv, sample in PLANES[fmt]:
        stride = (width + wdiv - 1) // wdiv * sample
        out.append(PlaneFormat(stride * ((height + hdiv - 1) // hdiv), stride))
    return tuple(out)


def frame_size(fmt: Format, width: int, height: int) -> int:
    return sum(p.plane_size for p in plane_formats(fmt, width, height))


def raw_params(
    fmt: Format, width: int, height: int, *, min_buffers: int, max_buffers: int, rate: int = 30
) -> Params:
    """The output queue's params for decoded frames of `fmt`."""
    return Params(
        QueueType.OUTPUT,
        fmt,
        width,
        height,
        min_buffers,
        max_buffers,
        Crop(0, 0, width, height),
        rate,
        plane_formats(fmt, width, height),
    )


def coded_params(
    fmt: Format, width: int, height: int, buffer_size: int, *, max_buffers: int
) -> Params:
    """The input queue's params: one plane of `buffer_size` bitstream bytes."""
    return Params(
        QueueType.INPUT,
        fmt,
        width,
        height,
        1,
        max_buffers,
        Crop(0, 0, width, height),
        30,
        (PlaneFormat(buffer_size, 0),),
    )
