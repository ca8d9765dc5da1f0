"""Hostile descriptor chains on both queues: each its own test, the daemon serving
the next request every time."""

from __future__ import annotations

from video_driver import Driver, hdr, parse_header, query_capability, stream_create

from vhost_device_video.protocol import MAX_COMMAND_SIZE, Cmd, QueueType, Resp
from vhost_user_core.virtqueue import VIRTQ_DESC_F_NEXT


def _still_serving(driver: Driver) -> None:
    response = driver.command(query_capability(QueueType.INPUT))
    assert parse_header(response)[0] == Resp.OK_QUERY_CAPABILITY


def test_a_request_outside_guest_memory(driver: Driver) -> None:
    dst = driver.ram.alloc(64)
    head = driver.post_raw([(1 << 44, 16, False), (dst, 64, True)])
    assert driver.wait(head) == 0
    _still_serving(driver)


def test_a_response_buffer_outside_guest_memory(driver: Driver) -> None:
    src = driver.ram.alloc(16)
    driver.ram.memory.write(src, query_capability(QueueType.INPUT))
    head = driver.post_raw([(src, 16, False), (1 << 44, 4096, True)])
    assert driver.wait(head) == 0
    _still_serving(driver)


def test_a_request_with_no_response_buffer(driver: Driver) -> None:
    head = driver.post(stream_create(1), room=0)
    assert driver.wait(head) == 0
    # It was carried out all the same (the answer had nowhere to go).
    assert parse_header(driver.command(stream_create(1)))[0] == Resp.ERR_INVALID_STREAM_ID


def test_a_response_buffer_smaller_than_a_header(driver: Driver) -> None:
    head = driver.post(query_capability(QueueType.INPUT), room=4)
    assert driver.wait(head) == 0
    _still_serving(driver)


def test_a_capability_buffer_too_small_gets_an_error_not_a_cut_answer(driver: Driver) -> None:
    response = driver.command(query_capability(QueueType.INPUT), room=32)
    assert parse_header(response) == (Resp.ERR_INVALID_PARAMETER, 0)


def test_a_request_split_across_descriptors(driver: Driver) -> None:
    request = stream_create(7)
    a, b = driver.ram.alloc(5), driver.ram.alloc(len(request) - 5)
    driver.ram.memory.write(a, request[:5])
    driver.ram.memory.write(b, request[5:])
    dst = driver.ram.alloc(8)
    head = driver.post_raw([(a, 5, False), (b, len(request) - 5, False), (dst, 8, True)])
    assert driver.wait(head) == 8
    assert parse_header(driver.ram.memory.read(dst, 8)) == (Resp.OK_NODATA, 7)


def test_a_request_larger_than_any_command(driver: Driver) -> None:
    big = hdr(Cmd.STREAM_DESTROY, 1) + bytes(MAX_COMMAND_SIZE)
    assert parse_header(driver.command(big))[0] == Resp.ERR_INVALID_PARAMETER
    _still_serving(driver)


def test_a_descriptor_loop(driver: Driver) -> None:
    request = query_capability(QueueType.INPUT)
    src, dst = driver.ram.alloc(16), driver.ram.alloc(64)
    driver.ram.memory.write(src, request)
    q = driver.cmdq
    head = q.driver.add([(src, 16, False), (dst, 64, True)])
    q.driver.write_raw_descriptor((head + 1) % q.size, dst, 64, VIRTQ_DESC_F_NEXT, head)
    q.publish()
    assert driver.wait(head) == 0
    _still_serving(driver)


def test_a_readable_buffer_after_a_writable_one(driver: Driver) -> None:
    src, dst = driver.ram.alloc(16), driver.ram.alloc(16)
    driver.ram.memory.write(src, query_capability(QueueType.INPUT))
    head = driver.post_raw([(dst, 16, True), (src, 16, False)])
    assert driver.wait(head) == 0
    _still_serving(driver)


def test_an_event_buffer_too_small(driver: Driver) -> None:
    gpa = driver.ram.alloc(4)
    small = driver.eventq.driver.add([(gpa, 4, True)])
    driver.eventq.publish()
    driver.post_events(1)
    assert driver.status(stream_create(1)) == Resp.OK_NODATA
    from video_driver import resource_create, resource_queue

    assert driver.status(resource_create(1, QueueType.INPUT, 1, [driver.buffer(64)])) == (
        Resp.OK_NODATA
    )
    driver.post(resource_queue(1, QueueType.INPUT, 1, sizes=[8]))
    used = dict(driver.eventq.wait_used(2))
    assert used[small] == 0  # refused, and the event went to the next buffer
    assert len(used) == 2


def test_a_read_only_event_buffer(driver: Driver) -> None:
    gpa = driver.ram.alloc(8)
    head = driver.eventq.driver.add([(gpa, 8, False)])
    driver.eventq.publish()
    assert driver.status(stream_create(1)) == Resp.OK_NODATA
    from video_driver import resource_create, resource_queue

    driver.status(resource_create(1, QueueType.INPUT, 1, [driver.buffer(64)]))
    driver.post(resource_queue(1, QueueType.INPUT, 1, sizes=[8]))
    assert driver.eventq.wait_used(1) == [(head, 0)]
    _still_serving(driver)


def test_a_resource_whose_memory_is_gone_when_used(driver: Driver) -> None:
    """The entries were checked at RESOURCE_CREATE; later reads are checked again."""
    from video_driver import resource_create, resource_queue

    assert driver.status(stream_create(1)) == Resp.OK_NODATA
    buf = driver.buffer(64)
    assert driver.status(resource_create(1, QueueType.INPUT, 1, [buf])) == Resp.OK_NODATA
    inp = driver.post(resource_queue(1, QueueType.INPUT, 1, sizes=[8]))
    assert not driver.answered(inp)
    _still_serving(driver)
