"""The python-evdev adapter against the real kernel: inside a hostkernel guest, a
`uinput` device stands for the host's keyboard/tablet; the backend describes it (names,
ids, props, bits, ABS_INFO), passes its frames on, writes the guest's LEDs back to it,
and `--grab` takes it from every other reader."""

from __future__ import annotations

import errno
import select
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import evdev
import pytest
from evdev import AbsInfo, UInput
from evdev import ecodes as e
from input_driver import cfg, post_event_buffers, read_events, send_status

from vhost_device_input.device import InputBackend
from vhost_device_input.errors import ConfigError
from vhost_device_input.host import EvdevDevice
from vhost_device_input.protocol import Select
from vhost_user_core.testing.harness import connected_frontend

pytestmark = pytest.mark.hostkernel("uinput")

SYN = (e.EV_SYN, e.SYN_REPORT, 0)


@pytest.fixture
def uinput() -> Iterator[UInput]:
    events = {
        e.EV_KEY: [e.KEY_A, e.KEY_B, e.BTN_TOUCH],
        e.EV_ABS: [
            (e.ABS_X, AbsInfo(5, 0, 1000, 4, 8, 10)),
            (e.ABS_Y, AbsInfo(0, -50, 50, 0, 0, 0)),
        ],
        e.EV_LED: [e.LED_CAPSL, e.LED_NUML],
    }
    ui = UInput(
        events,
        name="uinput test pad",
        vendor=0x1234,
        product=0x5678,
        version=2,
        bustype=e.BUS_USB,
        input_props=[e.INPUT_PROP_DIRECT],
    )
    time.sleep(0.2)  # the evdev node appears
    yield ui
    ui.close()


def _bits(data: bytes) -> set[int]:
    return {i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1}


def test_description_events_and_leds(tmp_path: Path, uinput: UInput) -> None:
    device = EvdevDevice(uinput.device.path)
    try:
        backend = InputBackend(device)
        with connected_frontend(lambda: backend, tmp_path / "t.sock") as fe:
            eventq, statusq = fe.start_device(2, 64)
            assert cfg(fe, Select.ID_NAME) == b"uinput test pad"
            ids = struct.unpack("<HHHH", cfg(fe, Select.ID_DEVIDS))
            assert ids == (e.BUS_USB, 0x1234, 0x5678, 2)
            assert _bits(cfg(fe, Select.PROP_BITS)) == {e.INPUT_PROP_DIRECT}
            assert _bits(cfg(fe, Select.EV_BITS, e.EV_KEY)) == {e.KEY_A, e.KEY_B, e.BTN_TOUCH}
            assert _bits(cfg(fe, Select.EV_BITS, e.EV_LED)) == {e.LED_CAPSL, e.LED_NUML}
            absx = struct.unpack("<iiiii", cfg(fe, Select.ABS_INFO, e.ABS_X))
            assert absx == (0, 1000, 4, 8, 10)
            absy = struct.unpack("<iiiii", cfg(fe, Select.ABS_INFO, e.ABS_Y))
            assert absy == (-50, 50, 0, 0, 0)

            post_event_buffers(fe, eventq, 6)
            uinput.write(e.EV_ABS, e.ABS_X, 300)
            uinput.write(e.EV_KEY, e.BTN_TOUCH, 1)
            uinput.syn()
            uinput.write(e.EV_KEY, e.KEY_A, 1)
            uinput.syn()
            got = read_events(fe, eventq, 5)
            assert got == [(3, 0, 300), (1, e.BTN_TOUCH, 1), SYN, (1, e.KEY_A, 1), SYN]

            head = send_status(fe, statusq, (e.EV_LED, e.LED_CAPSL, 1))
            assert statusq.wait_used(1) == [(head, 0)]
        ready, _, _ = select.select([uinput.fd], [], [], 5)
        assert ready
        leds = [(ev.type, ev.code, ev.value) for ev in uinput.read() if ev.type == e.EV_LED]
        assert leds == [(e.EV_LED, e.LED_CAPSL, 1)]  # the kernel's uinput got it
        assert evdev.InputDevice(uinput.device.path).leds() == [e.LED_CAPSL]
    finally:
        device.close()


def test_grab_keeps_other_readers_out(uinput: UInput) -> None:
    device = EvdevDevice(uinput.device.path, grab=True)
    other = evdev.InputDevice(uinput.device.path)
    try:
        with pytest.raises(OSError) as busy:
            other.grab()
        assert busy.value.errno == errno.EBUSY
        with pytest.raises(ConfigError, match="grabbed by another program"):
            EvdevDevice(uinput.device.path, grab=True)
        uinput.write(e.EV_KEY, e.KEY_B, 1)
        uinput.syn()
        ready, _, _ = select.select([device.fileno()], [], [], 5)
        assert ready
        assert device.read() == [(1, e.KEY_B, 1), SYN]
        assert select.select([other.fd], [], [], 0.2)[0] == []  # the grab kept it out
    finally:
        other.close()
        device.close()


def test_without_grab_the_host_still_sees_events(uinput: UInput) -> None:
    device = EvdevDevice(uinput.device.path)
    other = evdev.InputDevice(uinput.device.path)
    try:
        uinput.write(e.EV_KEY, e.KEY_B, 1)
        uinput.syn()
        assert select.select([other.fd], [], [], 5)[0]
        assert [(ev.type, ev.code) for ev in other.read()] == [(1, e.KEY_B), (0, 0)]
    finally:
        other.close()
        device.close()
