"""Hostile guests, one case a test: each is refused or ignored, and the device goes on
(the handshake still works afterwards)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from console_driver import CONTROL, DEVICE_READY, PORT_ADD, PORT_READY, ConsoleDriver
from test_console_device import client, network, recv_exactly

from vhost_device_console.device import MAX_PENDING_CONTROL
from vhost_user_core import ProtocolError


def _still_works(driver: ConsoleDriver) -> None:
    assert [p[:3] for p in driver.handshake()][0] == (0, PORT_ADD, 0)


def test_a_short_control_packet_is_ignored(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        driver.send(driver.ctrl_tx, b"\0\0\0")
        _still_works(driver)


def test_an_empty_control_chain_is_ignored(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        driver.send(driver.ctrl_tx, b"")
        _still_works(driver)


def test_a_control_packet_for_another_port_is_ignored(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, backends):
        driver.control(7, PORT_READY, 1)
        driver.frontend.sync()
        assert not backends[0].port_ready
        _still_works(driver)


def test_an_unknown_control_event_is_ignored(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        driver.control(0, 0xBEEF, 1)
        _still_works(driver)


def test_a_failed_device_ready_adds_no_port(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        driver.post_writable(driver.ctrl_rx, 64)
        driver.control(0, DEVICE_READY, 0)
        with pytest.raises(TimeoutError):
            driver.written(driver.ctrl_rx, 1, timeout=0.3)


def test_a_too_small_control_rx_buffer_is_returned_empty(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        driver.post_writable(driver.ctrl_rx, 4)
        driver.control(0, DEVICE_READY, 1)
        assert driver.written(driver.ctrl_rx, 1) == [b""]
        _still_works(driver)


def test_a_device_ready_flood_is_bounded(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        for _ in range(MAX_PENDING_CONTROL * 3):
            driver.control(0, DEVICE_READY, 1)
        driver.post_writable(driver.ctrl_rx, 64, MAX_PENDING_CONTROL + 4)
        got = driver.written(driver.ctrl_rx, MAX_PENDING_CONTROL)
        assert all(CONTROL.unpack_from(p)[1] == PORT_ADD for p in got)
        with pytest.raises(TimeoutError):
            driver.ctrl_rx.wait_used(1, timeout=0.3)


def test_a_config_write_beside_emerg_wr_is_refused(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, _, _):
        with pytest.raises(ProtocolError, match="SET_CONFIG"):  # REPLY_ACK's failure
            driver.frontend.set_config(0, struct.pack("<HH", 1, 1))
        assert driver.frontend.get_config(0, 4) == b"\0\0\0\0"
        _still_works(driver)


def test_a_tx_chain_outside_guest_memory(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        head = driver.tx.driver.add([(1 << 44, 64, False)])
        driver.tx.publish()
        assert driver.tx.wait_used(1) == [(head, 0)]
        with client(host) as sock:
            driver.send(driver.tx, b"ok")
            assert recv_exactly(sock, 2) == b"ok"


def test_an_rx_chain_without_room_is_skipped(tmp_path: Path) -> None:
    with network(tmp_path) as (driver, host, _):
        src = driver.ram.alloc(8)
        bad = driver.rx.driver.add([(src, 8, False)])  # readable only: nowhere to write
        driver.rx.publish()
        driver.post_writable(driver.rx, 16)
        with client(host) as sock:
            sock.sendall(b"hi")
            used = driver.rx.wait_used(2)
            assert used[0] == (bad, 0)
            head, length = used[1]
            assert driver.ram.memory.read(driver.posted.pop((0, head)), length) == b"hi"
