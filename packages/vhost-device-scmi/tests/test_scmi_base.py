"""The base protocol (0x10), every message upstream answers, and what it does not."""

from __future__ import annotations

import struct

import pytest
from scmi_driver import ScmiDriver

from vhost_device_scmi.protocol import BaseMessage, Protocol, Status

BASE = Protocol.BASE


def test_version(scmi: ScmiDriver) -> None:
    assert scmi.call(BASE, BaseMessage.VERSION) == (0, struct.pack("<I", 0x20000))


def test_attributes_one_protocol_besides_base_one_agent(scmi: ScmiDriver) -> None:
    status, data = scmi.call(BASE, BaseMessage.ATTRIBUTES)
    assert status == Status.SUCCESS
    (word,) = struct.unpack("<I", data)
    assert word & 0xFF == 1 and (word >> 8) & 0xFF == 1


@pytest.mark.parametrize("message", list(BaseMessage))
def test_message_attributes_of_every_message(scmi: ScmiDriver, message: int) -> None:
    assert scmi.call(BASE, BaseMessage.MESSAGE_ATTRIBUTES, message) == (0, bytes(4))


@pytest.mark.parametrize("message", [0x7, 0x8, 0x9, 0xA, 0xB, 0xC, 0xFF])
def test_message_attributes_of_an_unknown_message_is_not_found(
    scmi: ScmiDriver, message: int
) -> None:
    assert scmi.call(BASE, BaseMessage.MESSAGE_ATTRIBUTES, message) == (Status.NOT_FOUND, b"")


def test_discover_vendor_and_sub_vendor(scmi: ScmiDriver) -> None:
    assert scmi.call(BASE, BaseMessage.DISCOVER_VENDOR) == (0, b"Python".ljust(16, b"\0"))
    assert scmi.call(BASE, BaseMessage.DISCOVER_SUB_VENDOR) == (
        0,
        b"vhost-device".ljust(16, b"\0"),
    )


def test_discover_implementation_version(scmi: ScmiDriver) -> None:
    assert scmi.call(BASE, BaseMessage.DISCOVER_IMPLEMENTATION_VERSION) == (0, bytes(4))


def test_discover_list_protocols(scmi: ScmiDriver) -> None:
    assert scmi.call(BASE, BaseMessage.DISCOVER_LIST_PROTOCOLS, 0) == (
        0,
        struct.pack("<I", 1) + bytes([0x15, 0, 0, 0]),
    )
    assert scmi.call(BASE, BaseMessage.DISCOVER_LIST_PROTOCOLS, 1) == (0, struct.pack("<I", 0))
    assert scmi.call(BASE, BaseMessage.DISCOVER_LIST_PROTOCOLS, 2) == (
        Status.INVALID_PARAMETERS,
        b"",
    )


@pytest.mark.parametrize("message", [0x7, 0x8, 0x9, 0xA, 0xB, 0xC, 0x10, 0xFF])
def test_messages_upstream_does_not_answer_are_not_supported(
    scmi: ScmiDriver, message: int
) -> None:
    # DISCOVER_AGENT, NOTIFY_ERRORS, SET_DEVICE_PERMISSIONS, ... and beyond
    assert scmi.call(BASE, message, 0) == (Status.NOT_SUPPORTED, b"")


@pytest.mark.parametrize("protocol", [0x00, 0x11, 0x13, 0x14, 0x16, 0x80, 0xFF])
def test_unknown_protocols_are_not_supported(scmi: ScmiDriver, protocol: int) -> None:
    assert scmi.call(protocol, 0) == (Status.NOT_SUPPORTED, b"")


@pytest.mark.parametrize(
    ("message", "args"),
    [
        (BaseMessage.VERSION, (0,)),
        (BaseMessage.ATTRIBUTES, (0,)),
        (BaseMessage.MESSAGE_ATTRIBUTES, ()),
        (BaseMessage.MESSAGE_ATTRIBUTES, (0, 0)),
        (BaseMessage.DISCOVER_VENDOR, (1,)),
        (BaseMessage.DISCOVER_LIST_PROTOCOLS, ()),
    ],
)
def test_bad_lengths_are_protocol_errors(
    scmi: ScmiDriver, message: int, args: tuple[int, ...]
) -> None:
    assert scmi.call(BASE, message, *args) == (Status.PROTOCOL_ERROR, b"")
