"""Every malformed or out-of-order command gets the draft's error code, and the
daemon goes on: each case is its own test."""

from __future__ import annotations

import struct

import pytest
from video_driver import (
    Driver,
    control,
    hdr,
    parse_header,
    query_capability,
    queue_command,
    resource_create,
    resource_queue,
    set_params,
    stream_create,
)

from vhost_device_video.protocol import (
    MAX_PLANES,
    PARAMS,
    Cmd,
    Control,
    Format,
    MemType,
    PlanesLayout,
    QueueType,
    Resp,
)

IN, OUT = QueueType.INPUT, QueueType.OUTPUT
INVALID_PARAMETER = Resp.ERR_INVALID_PARAMETER


def _still_serving(driver: Driver) -> None:
    assert parse_header(driver.command(query_capability(IN)))[0] == Resp.OK_QUERY_CAPABILITY


def _with_stream(driver: Driver, fmt: int = Format.FWHT) -> None:
    assert driver.status(stream_create(1, fmt)) == Resp.OK_NODATA


def _answer(driver: Driver, request: bytes) -> tuple[int, int]:
    response = driver.command(request)
    assert len(response) == 8  # an error is the header alone
    return parse_header(response)


def test_an_unknown_command_is_an_invalid_operation(driver: Driver) -> None:
    assert _answer(driver, hdr(0x10F, 3)) == (Resp.ERR_INVALID_OPERATION, 3)
    _still_serving(driver)


def test_a_response_type_sent_as_a_command(driver: Driver) -> None:
    assert _answer(driver, hdr(Resp.OK_NODATA))[0] == Resp.ERR_INVALID_OPERATION


def test_a_request_shorter_than_a_header(driver: Driver) -> None:
    assert _answer(driver, b"\x00\x01\x00")[0] == INVALID_PARAMETER
    _still_serving(driver)


@pytest.mark.parametrize("cmd", [c for c in Cmd if c not in (Cmd.STREAM_DESTROY, Cmd.STREAM_DRAIN)])
def test_a_command_shorter_than_its_struct(driver: Driver, cmd: Cmd) -> None:
    assert _answer(driver, hdr(cmd, 1) + b"\0\0\0")[0] == INVALID_PARAMETER


@pytest.mark.parametrize("queue", [0, 0x102, 0xFFFFFFFF])
def test_a_bad_queue_type(driver: Driver, queue: int) -> None:
    assert _answer(driver, query_capability(queue))[0] == INVALID_PARAMETER


def test_stream_create_with_an_id_in_use(driver: Driver) -> None:
    _with_stream(driver)
    assert _answer(driver, stream_create(1))[0] == Resp.ERR_INVALID_STREAM_ID


def test_stream_create_with_an_unknown_format(driver: Driver) -> None:
    assert _answer(driver, stream_create(1, 0x2000))[0] == INVALID_PARAMETER


def test_stream_create_with_a_raw_format(driver: Driver) -> None:
    assert _answer(driver, stream_create(1, Format.NV12))[0] == INVALID_PARAMETER


def test_stream_create_with_a_format_the_backend_does_not_decode(driver: Driver) -> None:
    assert _answer(driver, stream_create(1, Format.MPEG2))[0] == INVALID_PARAMETER


@pytest.mark.parametrize(("in_mem", "out_mem"), [(MemType.VIRTIO_OBJECT, 0), (0, 7)])
def test_stream_create_with_memory_not_offered(driver: Driver, in_mem: int, out_mem: int) -> None:
    request = stream_create(1, in_mem=in_mem, out_mem=out_mem)
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_too_many_streams(driver: Driver) -> None:
    for sid in range(16):
        assert driver.status(stream_create(sid)) == Resp.OK_NODATA
    assert _answer(driver, stream_create(99))[0] == Resp.ERR_OUT_OF_MEMORY


@pytest.mark.parametrize(
    "request_",
    [
        hdr(Cmd.STREAM_DESTROY, 9),
        hdr(Cmd.STREAM_DRAIN, 9),
        queue_command(Cmd.RESOURCE_DESTROY_ALL, 9, IN),
        queue_command(Cmd.QUEUE_CLEAR, 9, IN),
        queue_command(Cmd.GET_PARAMS, 9, IN),
        resource_create(9, IN, 1, [(0x100000, 4096)]),
        resource_queue(9, IN, 1, sizes=[1]),
        control(Cmd.GET_CONTROL, 9, Control.PROFILE),
        control(Cmd.SET_CONTROL, 9, Control.PROFILE, 0),
    ],
    ids=lambda r: Cmd(struct.unpack_from("<I", r)[0]).name,
)
def test_a_command_on_an_unknown_stream(driver: Driver, request_: bytes) -> None:
    assert _answer(driver, request_) == (Resp.ERR_INVALID_STREAM_ID, 9)


def test_set_params_on_an_unknown_stream(driver: Driver) -> None:
    body = bytearray(PARAMS.size)
    struct.pack_into("<II", body, 0, IN, Format.FWHT)
    assert _answer(driver, hdr(Cmd.SET_PARAMS, 9) + bytes(body))[0] == Resp.ERR_INVALID_STREAM_ID


def test_resource_create_with_an_id_in_use(driver: Driver) -> None:
    _with_stream(driver)
    buf = driver.buffer(4096)
    assert driver.status(resource_create(1, IN, 1, [buf])) == Resp.OK_NODATA
    assert _answer(driver, resource_create(1, IN, 1, [buf]))[0] == Resp.ERR_INVALID_RESOURCE_ID
    # The same id on the other queue is another resource.
    assert driver.status(resource_create(1, OUT, 1, [buf])) == Resp.OK_NODATA


def test_resource_create_outside_guest_memory(driver: Driver) -> None:
    _with_stream(driver)
    request = resource_create(1, IN, 1, [(1 << 40, 4096)])
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_resource_create_wrapping_the_address_space(driver: Driver) -> None:
    _with_stream(driver)
    request = resource_create(1, IN, 1, [((1 << 64) - 4096, 8192)])
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_resource_create_with_fewer_entries_than_announced(driver: Driver) -> None:
    _with_stream(driver)
    request = resource_create(1, IN, 1, [driver.buffer(4096)], counts=[3])
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_resource_create_with_no_entries(driver: Driver) -> None:
    _with_stream(driver)
    assert _answer(driver, resource_create(1, IN, 1, [], counts=[0]))[0] == INVALID_PARAMETER


def test_resource_create_with_an_empty_entry(driver: Driver) -> None:
    _with_stream(driver)
    assert _answer(driver, resource_create(1, IN, 1, [(0x100000, 0)]))[0] == INVALID_PARAMETER


@pytest.mark.parametrize("layout", [0, 3, 4])
def test_resource_create_with_a_bad_layout(driver: Driver, layout: int) -> None:
    _with_stream(driver)
    request = resource_create(1, IN, 1, [driver.buffer(4096)], layout=layout)
    assert _answer(driver, request)[0] == INVALID_PARAMETER


@pytest.mark.parametrize("planes", [0, MAX_PLANES + 1])
def test_resource_create_with_a_bad_plane_count(driver: Driver, planes: int) -> None:
    _with_stream(driver)
    request = resource_create(1, IN, 1, [driver.buffer(4096)], num_planes=planes)
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_resource_create_per_plane_counts_every_plane(driver: Driver) -> None:
    _with_stream(driver)
    bufs = [driver.buffer(4096) for _ in range(3)]
    short = resource_create(
        1, OUT, 1, bufs[:2], layout=PlanesLayout.PER_PLANE, num_planes=3, counts=[1, 1, 1]
    )
    assert _answer(driver, short)[0] == INVALID_PARAMETER
    whole = resource_create(
        1, OUT, 1, bufs, layout=PlanesLayout.PER_PLANE, num_planes=3, counts=[1, 1, 1]
    )
    assert driver.status(whole) == Resp.OK_NODATA


def test_too_many_resources(driver: Driver) -> None:
    _with_stream(driver)
    buf = driver.buffer(4096)
    for rid in range(32):
        assert driver.status(resource_create(1, IN, rid, [buf])) == Resp.OK_NODATA
    assert _answer(driver, resource_create(1, IN, 99, [buf]))[0] == Resp.ERR_OUT_OF_MEMORY


def test_resource_queue_of_an_unknown_resource(driver: Driver) -> None:
    _with_stream(driver)
    assert _answer(driver, resource_queue(1, IN, 5, sizes=[1]))[0] == Resp.ERR_INVALID_RESOURCE_ID


def test_resource_queue_twice(driver: Driver) -> None:
    _with_stream(driver)
    assert driver.status(resource_create(1, IN, 1, [driver.buffer(4096)])) == Resp.OK_NODATA
    driver.post(resource_queue(1, IN, 1, sizes=[8]))
    assert _answer(driver, resource_queue(1, IN, 1, sizes=[8]))[0] == Resp.ERR_INVALID_OPERATION


def test_resource_queue_of_an_input_without_data(driver: Driver) -> None:
    _with_stream(driver)
    assert driver.status(resource_create(1, IN, 1, [driver.buffer(4096)])) == Resp.OK_NODATA
    assert _answer(driver, resource_queue(1, IN, 1))[0] == INVALID_PARAMETER
    assert _answer(driver, resource_queue(1, IN, 1, sizes=[0]))[0] == INVALID_PARAMETER


def test_resource_queue_with_more_data_than_the_resource(driver: Driver) -> None:
    _with_stream(driver)
    assert driver.status(resource_create(1, IN, 1, [driver.buffer(4096)])) == Resp.OK_NODATA
    assert _answer(driver, resource_queue(1, IN, 1, sizes=[4097]))[0] == INVALID_PARAMETER


def test_resource_queue_with_too_many_data_sizes(driver: Driver) -> None:
    _with_stream(driver)
    request = bytearray(resource_queue(1, IN, 1, sizes=[1]))
    struct.pack_into("<I", request, 24, MAX_PLANES + 1)  # num_data_sizes
    assert _answer(driver, bytes(request))[0] == INVALID_PARAMETER


def test_resource_queue_without_room_for_its_response(driver: Driver) -> None:
    _with_stream(driver)
    assert driver.status(resource_create(1, OUT, 1, [driver.buffer(4096)])) == Resp.OK_NODATA
    response = driver.command(resource_queue(1, OUT, 1), room=16)
    assert parse_header(response)[0] == INVALID_PARAMETER
    # It was not queued: with room it is.
    assert not driver.answered(driver.post(resource_queue(1, OUT, 1)))


def test_set_params_with_an_unknown_format(driver: Driver) -> None:
    _with_stream(driver)
    body = bytearray(PARAMS.size)
    struct.pack_into("<II", body, 0, OUT, 77)
    assert _answer(driver, hdr(Cmd.SET_PARAMS, 1) + bytes(body))[0] == INVALID_PARAMETER


def test_set_params_with_too_many_planes(driver: Driver) -> None:
    _with_stream(driver)
    body = bytearray(PARAMS.size)
    struct.pack_into("<II", body, 0, OUT, Format.NV12)
    struct.pack_into("<I", body, 44, MAX_PLANES + 1)  # num_planes
    assert _answer(driver, hdr(Cmd.SET_PARAMS, 1) + bytes(body))[0] == INVALID_PARAMETER


def test_an_unknown_control(driver: Driver) -> None:
    _with_stream(driver, Format.H264)
    assert _answer(driver, control(Cmd.GET_CONTROL, 1, 9))[0] == Resp.ERR_UNSUPPORTED_CONTROL


def test_the_bitrate_control_is_the_encoder_s(driver: Driver) -> None:
    _with_stream(driver, Format.H264)
    request = control(Cmd.GET_CONTROL, 1, Control.BITRATE)
    assert _answer(driver, request)[0] == Resp.ERR_UNSUPPORTED_CONTROL
    query = control(Cmd.QUERY_CONTROL, 0, Control.BITRATE, Format.H264)
    assert _answer(driver, query)[0] == Resp.ERR_UNSUPPORTED_CONTROL


def test_a_control_the_format_does_not_have(driver: Driver) -> None:
    _with_stream(driver, Format.FWHT)
    assert _answer(driver, control(Cmd.GET_CONTROL, 1, Control.PROFILE))[0] == (
        Resp.ERR_UNSUPPORTED_CONTROL
    )


def test_query_control_of_an_unknown_format(driver: Driver) -> None:
    query = control(Cmd.QUERY_CONTROL, 0, Control.PROFILE, 0x4242)
    assert _answer(driver, query)[0] == INVALID_PARAMETER


def test_set_control_to_an_unsupported_value(driver: Driver) -> None:
    _with_stream(driver, Format.H264)
    request = control(Cmd.SET_CONTROL, 1, Control.PROFILE, 0x4242)
    assert _answer(driver, request)[0] == INVALID_PARAMETER


def test_set_params_that_changes_the_coded_format(driver: Driver) -> None:
    _with_stream(driver)
    from vhost_device_video.null import NullDecoder

    params = NullDecoder(Format.VP9, None).get_params(IN)  # type: ignore[arg-type]
    assert _answer(driver, set_params(1, params))[0] == INVALID_PARAMETER
