"""The codec against the draft: struct sizes, ids, round trips, and each malformed
request's error code (pure, no daemon)."""

from __future__ import annotations

import pytest
from video_driver import resource_create, resource_queue, stream_create

from vhost_device_video.protocol import (
    CONFIG,
    EVENT,
    FORMAT_DESC,
    FORMAT_RANGE,
    GET_PARAMS_RESP_SIZE,
    HDR,
    MEM_ENTRY,
    PARAMS,
    RESOURCE_CREATE,
    RESOURCE_QUEUE,
    STREAM_CREATE,
    Cmd,
    CommandError,
    Config,
    Crop,
    Format,
    FormatDesc,
    FormatFrame,
    Params,
    PlaneFormat,
    PlanesLayout,
    QueueType,
    Range,
    ResourceCreate,
    ResourceQueue,
    Resp,
    StreamCreate,
    decode_command,
    encode_capability,
    encode_resource_queue,
)


def test_struct_sizes_are_the_draft_s() -> None:
    # Header, config, each request's body after the header, and the response parts.
    assert (HDR.size, CONFIG.size, EVENT.size) == (8, 12, 8)
    assert HDR.size + STREAM_CREATE.size == 88
    assert HDR.size + RESOURCE_CREATE.size == 88 and MEM_ENTRY.size == 16
    assert HDR.size + RESOURCE_QUEUE.size == 64
    assert PARAMS.size == 112 and GET_PARAMS_RESP_SIZE == 120
    assert (FORMAT_DESC.size, FORMAT_RANGE.size) == (24, 16)
    assert len(encode_resource_queue(1, 2, 3, 4)) == 24


def test_ids_are_the_draft_s() -> None:
    assert Cmd.QUERY_CAPABILITY == 0x100 and Cmd.SET_CONTROL == 0x10C
    assert Resp.OK_NODATA == 0x200 and Resp.OK_GET_CONTROL == 0x205
    # Upstream's crate numbers its errors from 0x206; the draft (and its driver) from 0x300.
    assert Resp.ERR_INVALID_OPERATION == 0x300 and Resp.ERR_UNSUPPORTED_CONTROL == 0x305
    assert (QueueType.INPUT, QueueType.OUTPUT) == (0x100, 0x101)


def test_config_space() -> None:
    assert Config(1000, 120).encode() == CONFIG.pack(0, 1000, 120)


def test_stream_create_decodes_its_tag() -> None:
    cmd = decode_command(stream_create(5, Format.H264, b"cam\0junk"))
    assert cmd == StreamCreate(5, 0, 0, Format.H264, "cam")  # type: ignore[arg-type]


def test_resource_create_splits_entries_by_plane() -> None:
    request = resource_create(
        1,
        QueueType.OUTPUT,
        4,
        [(0x1000, 10), (0x2000, 20), (0x3000, 30)],
        layout=PlanesLayout.PER_PLANE,
        num_planes=2,
        offsets=[0, 0],
        counts=[2, 1],
    )
    cmd = decode_command(request)
    assert isinstance(cmd, ResourceCreate)
    assert [[(e.addr, e.length) for e in p] for p in cmd.planes] == [
        [(0x1000, 10), (0x2000, 20)],
        [(0x3000, 30)],
    ]


def test_resource_queue_keeps_only_the_sizes_in_use() -> None:
    cmd = decode_command(resource_queue(1, QueueType.INPUT, 2, 99, [7, 8]))
    assert cmd == ResourceQueue(1, QueueType.INPUT, 2, 99, (7, 8))


def test_params_round_trip() -> None:
    params = Params(
        QueueType.OUTPUT,
        Format.NV12,
        64,
        48,
        2,
        8,
        Crop(1, 2, 3, 4),
        30,
        (PlaneFormat(3072, 64), PlaneFormat(1536, 64)),
    )
    assert Params.decode(params.encode()) == params


def test_capability_layout() -> None:
    desc = FormatDesc(
        Format.FWHT, 0b11, frames=(FormatFrame(Range(1, 2), Range(3, 4), (Range(30, 30),)),)
    )
    data = encode_capability([desc])
    # header + num_descs + desc + 2 ranges + num_rates + 1 rate
    assert len(data) == 8 + 8 + 24 + 32 + 8 + 16


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", Resp.ERR_INVALID_PARAMETER),
        (HDR.pack(0x1FF, 0), Resp.ERR_INVALID_OPERATION),
        (HDR.pack(Cmd.QUERY_CAPABILITY, 0), Resp.ERR_INVALID_PARAMETER),
        (stream_create(1, fmt=Format.YUV420), Resp.ERR_INVALID_PARAMETER),
        (stream_create(1, in_mem=5), Resp.ERR_INVALID_PARAMETER),
        (HDR.pack(Cmd.GET_CONTROL, 1) + b"\x09\0\0\0\0\0\0\0", Resp.ERR_UNSUPPORTED_CONTROL),
    ],
    ids=["empty", "unknown", "short", "raw-coded-format", "bad-mem-type", "unknown-control"],
)
def test_malformed_requests(data: bytes, code: Resp) -> None:
    with pytest.raises(CommandError) as err:
        decode_command(data)
    assert err.value.code == code
