"""The device through a real socket, the core's frontend playing the draft's driver:
capabilities, config, a stream's whole life, queueing and completion order, drain,
clear, params and controls."""

from __future__ import annotations

from video_driver import (
    Driver,
    control,
    hdr,
    parse_capability,
    parse_header,
    parse_params,
    parse_query_control,
    parse_queue_response,
    query_capability,
    queue_command,
    resource_create,
    resource_queue,
    set_params,
    stream_create,
)

from vhost_device_video.device import VideoBackend
from vhost_device_video.null import CODED, RAW, NullBackend
from vhost_device_video.protocol import (
    F_RESOURCE_GUEST_PAGES,
    GET_PARAMS_RESP_SIZE,
    BufferFlag,
    Cmd,
    Control,
    EventType,
    Format,
    Level,
    Profile,
    QueueType,
    Resp,
)
from vhost_user_core import ProtocolFeature

IN, OUT = QueueType.INPUT, QueueType.OUTPUT
OK = Resp.OK_NODATA


def _stream(driver: Driver, sid: int = 1, inputs: int = 2, outputs: int = 2) -> None:
    """A stream with `inputs` input and `outputs` output resources (ids from 1)."""
    assert driver.status(stream_create(sid)) == OK
    for rid in range(1, inputs + 1):
        assert driver.status(resource_create(sid, IN, rid, [driver.buffer(4096)])) == OK
    for rid in range(1, outputs + 1):
        assert (
            driver.status(resource_create(sid, OUT, rid, [driver.buffer(640 * 480 * 3 // 2)])) == OK
        )


def test_features_queues_and_config(driver: Driver) -> None:
    frontend = driver.frontend
    assert frontend.features & F_RESOURCE_GUEST_PAGES
    assert frontend.get_queue_num() == 2
    version, max_caps, max_resp = driver.config()
    assert version == 0
    assert max_caps == max(len(driver.command(query_capability(q))) for q in QueueType)
    assert max_resp >= GET_PARAMS_RESP_SIZE


def test_the_backend_asks_for_what_it_uses() -> None:
    backend = VideoBackend(NullBackend())
    assert backend.num_queues == 2 and backend.max_queue_size == 1024
    assert backend.protocol_features & ProtocolFeature.CONFIG
    assert backend.protocol_features & ProtocolFeature.MQ


def test_capabilities_of_both_queues(driver: Driver) -> None:
    inputs = parse_capability(driver.command(query_capability(IN)))
    outputs = parse_capability(driver.command(query_capability(OUT)))
    assert [d[0] for d in inputs] == list(CODED)
    assert [d[0] for d in outputs] == list(RAW)
    # Every coded format decodes to every raw one, and back: the masks say so.
    assert all(mask == (1 << len(RAW)) - 1 for _, mask, _ in inputs)
    assert all(mask == (1 << len(CODED)) - 1 for _, mask, _ in outputs)
    (frame,) = inputs[0][2]
    assert frame == (16, 4096, 16, 16, 2304, 16, 1)


def test_a_stream_whole_life(driver: Driver) -> None:
    driver.post_events()
    _stream(driver)
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    assert (params.format, params.frame_width, params.frame_height) == (Format.YUV420, 640, 480)
    assert [p.plane_size for p in params.plane_formats] == [640 * 480, 320 * 240, 320 * 240]
    out = driver.post(resource_queue(1, OUT, 1))
    inp = driver.post(resource_queue(1, IN, 1, timestamp=1234, sizes=[100]))
    assert parse_queue_response(driver.response(inp)) == (Resp.OK_RESOURCE_QUEUE, 1234, 0, 0)
    assert parse_queue_response(driver.response(out)) == (Resp.OK_RESOURCE_QUEUE, 1234, 0, 0)
    assert driver.events(1) == [(EventType.DECODER_RESOLUTION_CHANGED, 1)]
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    assert not driver.answered(drain)  # a drain ends with its EOS output
    eos = driver.post(resource_queue(1, OUT, 2))
    assert parse_queue_response(driver.response(eos))[2] == BufferFlag.EOS
    assert parse_header(driver.response(drain)) == (OK, 1)
    assert driver.status(queue_command(Cmd.RESOURCE_DESTROY_ALL, 1, IN)) == OK
    assert driver.status(queue_command(Cmd.RESOURCE_DESTROY_ALL, 1, OUT)) == OK
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 1)) == OK
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 1)) == Resp.ERR_INVALID_STREAM_ID


def test_inputs_wait_for_outputs_and_complete_in_decode_order(driver: Driver) -> None:
    _stream(driver, inputs=3, outputs=3)
    inputs = [driver.post(resource_queue(1, IN, r, timestamp=10 * r, sizes=[8])) for r in (1, 2, 3)]
    assert not driver.answered(inputs[0])  # no output buffer yet: nothing decoded
    outputs = [driver.post(resource_queue(1, OUT, r)) for r in (3, 1)]
    stamps = [parse_queue_response(driver.response(h))[1] for h in outputs]
    assert stamps == [10, 20]  # output 3 got the first frame, output 1 the second
    for head, stamp in zip(inputs[:2], (10, 20), strict=True):
        assert parse_queue_response(driver.response(head))[1] == stamp
    assert not driver.answered(inputs[2])
    # The device answered input, then its output, frame by frame.
    assert driver.order[-4:] == [inputs[0], outputs[0], inputs[1], outputs[1]]


def test_clearing_the_input_queue_returns_its_buffers_with_err_first(driver: Driver) -> None:
    _stream(driver)
    held = [driver.post(resource_queue(1, IN, r, timestamp=r, sizes=[8])) for r in (1, 2)]
    clear = driver.post(queue_command(Cmd.QUEUE_CLEAR, 1, IN))
    assert parse_header(driver.response(clear)) == (OK, 1)
    for head, stamp in zip(held, (1, 2), strict=True):
        assert parse_queue_response(driver.response(head)) == (
            Resp.OK_RESOURCE_QUEUE,
            stamp,
            BufferFlag.ERR,
            0,
        )
    assert driver.order.index(held[1]) < driver.order.index(clear)
    # The resources are Dequeued again: they may be queued anew.
    out = driver.post(resource_queue(1, OUT, 1))
    again = driver.post(resource_queue(1, IN, 1, timestamp=7, sizes=[8]))
    assert parse_queue_response(driver.response(again))[1:3] == (7, 0)
    assert parse_queue_response(driver.response(out))[1:3] == (7, 0)


def test_clearing_the_output_queue(driver: Driver) -> None:
    _stream(driver)
    held = driver.post(resource_queue(1, OUT, 2))
    assert driver.status(queue_command(Cmd.QUEUE_CLEAR, 1, OUT)) == OK
    assert parse_queue_response(driver.response(held))[2] == BufferFlag.ERR


def test_a_clear_ends_a_drain(driver: Driver) -> None:
    _stream(driver)
    driver.post(resource_queue(1, IN, 1, sizes=[8]))
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    assert not driver.answered(drain)
    assert driver.status(queue_command(Cmd.QUEUE_CLEAR, 1, IN)) == OK
    assert parse_header(driver.response(drain)) == (OK, 1)


def test_a_drain_with_nothing_queued_waits_for_its_output(driver: Driver) -> None:
    _stream(driver)
    out = driver.post(resource_queue(1, OUT, 1))
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    assert parse_queue_response(driver.response(out))[2] == BufferFlag.EOS
    assert parse_header(driver.response(drain)) == (OK, 1)


def test_while_draining_inputs_and_drains_are_refused(driver: Driver) -> None:
    _stream(driver)
    driver.post(resource_queue(1, IN, 1, sizes=[8]))
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    assert driver.status(resource_queue(1, IN, 2, sizes=[8])) == Resp.ERR_INVALID_OPERATION
    assert driver.status(hdr(Cmd.STREAM_DRAIN, 1)) == Resp.ERR_INVALID_OPERATION
    # Outputs are still taken: they carry the drained frames.
    frame = driver.post(resource_queue(1, OUT, 1))
    assert parse_queue_response(driver.response(frame))[2] == 0
    eos = driver.post(resource_queue(1, OUT, 2))
    assert parse_queue_response(driver.response(eos))[2] == BufferFlag.EOS
    assert parse_header(driver.response(drain))[0] == OK


def test_destroying_a_stream_answers_all_it_holds(driver: Driver) -> None:
    _stream(driver)
    inp = driver.post(resource_queue(1, IN, 1, timestamp=5, sizes=[8]))
    drain = driver.post(hdr(Cmd.STREAM_DRAIN, 1))
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 1)) == OK
    assert parse_queue_response(driver.response(inp))[1:3] == (5, BufferFlag.ERR)
    assert parse_header(driver.response(drain))[0] == OK


def test_destroy_all_returns_queued_resources_then_forgets_them(driver: Driver) -> None:
    _stream(driver)
    held = driver.post(resource_queue(1, OUT, 1))
    assert driver.status(queue_command(Cmd.RESOURCE_DESTROY_ALL, 1, OUT)) == OK
    assert parse_queue_response(driver.response(held))[2] == BufferFlag.ERR
    assert driver.status(resource_queue(1, OUT, 1)) == Resp.ERR_INVALID_RESOURCE_ID
    # Ids are free again.
    assert driver.status(resource_create(1, OUT, 1, [driver.buffer(4096)])) == OK


def test_streams_are_independent(driver: Driver) -> None:
    driver.post_events()
    _stream(driver, sid=1)
    _stream(driver, sid=2)
    driver.post(resource_queue(2, IN, 1, timestamp=2, sizes=[8]))
    out = driver.post(resource_queue(2, OUT, 1))
    assert parse_queue_response(driver.response(out))[1] == 2
    assert driver.events(1) == [(EventType.DECODER_RESOLUTION_CHANGED, 2)]
    assert driver.status(hdr(Cmd.STREAM_DESTROY, 2)) == OK
    assert driver.status(queue_command(Cmd.GET_PARAMS, 1, IN)) == Resp.OK_GET_PARAMS


def test_set_params_changes_the_output_format(driver: Driver) -> None:
    _stream(driver)
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    nv12 = type(params)(**{**params.__dict__, "format": Format.NV12})
    assert driver.status(set_params(1, nv12)) == OK
    got = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    assert got.format == Format.NV12
    assert [p.plane_size for p in got.plane_formats] == [640 * 480, 640 * 240]


def test_set_params_on_input_resizes_both_queues(driver: Driver) -> None:
    _stream(driver)
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, IN)))
    bigger = type(params)(**{**params.__dict__, "frame_width": 1280, "frame_height": 720})
    assert driver.status(set_params(1, bigger)) == OK
    got = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    assert (got.frame_width, got.frame_height) == (1280, 720)


def test_set_params_refuses_what_is_not_offered(driver: Driver) -> None:
    _stream(driver)
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT)))
    argb = type(params)(**{**params.__dict__, "format": Format.ARGB8888})
    assert driver.status(set_params(1, argb)) == Resp.ERR_INVALID_PARAMETER
    inp = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, IN)))
    other = type(inp)(**{**inp.__dict__, "format": Format.VP9})
    assert driver.status(set_params(1, other)) == Resp.ERR_INVALID_PARAMETER


def test_query_control_lists_profiles_and_levels(driver: Driver) -> None:
    profiles = parse_query_control(
        driver.command(control(Cmd.QUERY_CONTROL, 0, Control.PROFILE, Format.H264))
    )
    assert Profile.H264_MAIN in profiles
    levels = parse_query_control(
        driver.command(control(Cmd.QUERY_CONTROL, 0, Control.LEVEL, Format.H264))
    )
    assert Level.H264_4_1 in levels


def test_get_and_set_control(driver: Driver) -> None:
    assert driver.status(stream_create(1, Format.H264)) == OK
    first = driver.command(control(Cmd.GET_CONTROL, 1, Control.PROFILE))
    assert parse_header(first)[0] == Resp.OK_GET_CONTROL
    assert int.from_bytes(first[8:12], "little") == Profile.H264_BASELINE
    assert driver.status(control(Cmd.SET_CONTROL, 1, Control.PROFILE, Profile.H264_HIGH)) == OK
    now = driver.command(control(Cmd.GET_CONTROL, 1, Control.PROFILE))
    assert int.from_bytes(now[8:12], "little") == Profile.H264_HIGH


def test_events_wait_for_eventq_buffers(driver: Driver) -> None:
    for sid in range(1, 4):
        _stream(driver, sid=sid, inputs=1, outputs=0)
        driver.post(resource_queue(sid, IN, 1, sizes=[8]))
    driver.frontend.sync()
    driver.post_events(3)
    assert sorted(driver.events(3)) == [
        (EventType.DECODER_RESOLUTION_CHANGED, s) for s in (1, 2, 3)
    ]


def test_upstream_s_params_ext_commands(driver: Driver) -> None:
    """The driver upstream tests with sends GET/SET_PARAMS_EXT: params + resource_type."""
    _stream(driver)
    response = driver.command(queue_command(Cmd.GET_PARAMS_EXT, 1, OUT))
    assert len(response) == GET_PARAMS_RESP_SIZE + 8
    assert response[GET_PARAMS_RESP_SIZE:] == bytes(8)  # resource_type GUEST_PAGES
    params = parse_params(response)
    nv12 = type(params)(**{**params.__dict__, "format": Format.NV12})
    request = hdr(Cmd.SET_PARAMS_EXT, 1) + nv12.encode() + bytes(8)
    assert driver.status(request) == OK
    assert parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, OUT))).format == (
        Format.NV12
    )


def test_set_params_with_a_frame_too_big_to_describe_is_refused(driver: Driver) -> None:
    # Found by fuzzing (fuzz/targets/video.py): 0xFFFFFFFF x 0xFFFFFFFF was taken, and
    # the next GET_PARAMS's plane sizes overflowed their u32 fields (struct.error out of
    # handle_queue) instead of the guest being told its values were out of range.
    _stream(driver)
    params = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, IN)))
    for width, height in [(0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 1), (70000, 70000)]:
        huge = type(params)(**{**params.__dict__, "frame_width": width, "frame_height": height})
        assert driver.status(set_params(1, huge)) == Resp.ERR_INVALID_PARAMETER
    for queue in (IN, OUT):  # both queues as they were, and still described
        got = parse_params(driver.command(queue_command(Cmd.GET_PARAMS, 1, queue)))
        assert (got.frame_width, got.frame_height) == (640, 480)
