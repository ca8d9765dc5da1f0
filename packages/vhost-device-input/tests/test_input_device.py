"""The device through a real socket, driven by the core's Python frontend playing the
Linux virtio-input driver: config selects, frames, overrun, the status queue."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from evdev import ecodes as e
from input_driver import cfg, post_event_buffers, read_events, send_status

from vhost_device_input.device import InputBackend
from vhost_device_input.host import SimDevice
from vhost_device_input.protocol import Select
from vhost_user_core import VIRTIO_RING_F_EVENT_IDX
from vhost_user_core.testing.harness import connected_frontend

SYN = (e.EV_SYN, e.SYN_REPORT, 0)


@pytest.fixture
def tablet(tmp_path: Path):  # type: ignore[no-untyped-def]
    device = SimDevice("tablet", str(tmp_path / "t.sock.events"))
    yield device
    device.close()


def _bits(data: bytes) -> set[int]:
    return {i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1}


def test_config_describes_the_device(tmp_path: Path, tablet: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(tablet), tmp_path / "t.sock") as frontend:
        frontend.start_device(2, 64)
        assert cfg(frontend, Select.ID_NAME) == b"vhost-device-input sim tablet"
        assert cfg(frontend, Select.ID_SERIAL) == b"sim-tablet"
        assert struct.unpack("<HHHH", cfg(frontend, Select.ID_DEVIDS)) == (6, 0x0627, 3, 1)
        assert _bits(cfg(frontend, Select.PROP_BITS)) == {e.INPUT_PROP_DIRECT}
        assert _bits(cfg(frontend, Select.EV_BITS, e.EV_ABS)) == {e.ABS_X, e.ABS_Y}
        assert e.BTN_TOUCH in _bits(cfg(frontend, Select.EV_BITS, e.EV_KEY))
        assert cfg(frontend, Select.EV_BITS, e.EV_REL) == b""
        absx = struct.unpack("<iiiii", cfg(frontend, Select.ABS_INFO, e.ABS_X))
        assert absx == (0, 32767, 0, 0, 100)
        assert cfg(frontend, Select.ABS_INFO, e.ABS_Z) == b""  # an axis it lacks
        assert cfg(frontend, 0x7F) == b""  # an unknown select: size 0
        # select and subsel written together, as one two-byte write
        frontend.set_config(0, bytes([Select.ABS_INFO, e.ABS_Y]))
        assert frontend.get_config(0, 3) == bytes([Select.ABS_INFO, e.ABS_Y, 20])


@pytest.mark.parametrize("event_idx", [True, False], ids=["event_idx", "no_event_idx"])
def test_frames_arrive_whole_and_in_order(
    tmp_path: Path, tablet: SimDevice, event_idx: bool
) -> None:
    backend = InputBackend(tablet)
    with connected_frontend(lambda: backend, tmp_path / "t.sock") as frontend:
        features = None if event_idx else frontend.get_features() & ~VIRTIO_RING_F_EVENT_IDX
        eventq, _ = frontend.start_device(2, 64, features=features)
        post_event_buffers(frontend, eventq, 5)
        tablet.inject([(e.EV_ABS, e.ABS_X, 100), (e.EV_ABS, e.ABS_Y, 200)])
        time.sleep(0.2)  # no SYN_REPORT yet: nothing may reach the guest
        with pytest.raises(TimeoutError):
            eventq.wait_used(1, timeout=0.1)
        tablet.inject([SYN, (e.EV_KEY, e.BTN_TOUCH, 1), SYN])
        got = read_events(frontend, eventq, 5)
        assert got == [(3, 0, 100), (3, 1, 200), SYN, (1, e.BTN_TOUCH, 1), SYN]


def test_a_frame_waits_for_buffers_for_all_of_it(tmp_path: Path, tablet: SimDevice) -> None:
    with connected_frontend(lambda: InputBackend(tablet), tmp_path / "t.sock") as frontend:
        eventq, _ = frontend.start_device(2, 64)
        post_event_buffers(frontend, eventq, 2)
        tablet.inject([(e.EV_ABS, e.ABS_X, 1), (e.EV_ABS, e.ABS_Y, 2), SYN])
        with pytest.raises(TimeoutError):  # two buffers for three events
            eventq.wait_used(1, timeout=0.3)
        post_event_buffers(frontend, eventq, 1)
        assert read_events(frontend, eventq, 3) == [(3, 0, 1), (3, 1, 2), SYN]


def test_overrun_replaces_waiting_frames_with_syn_dropped(
    tmp_path: Path, tablet: SimDevice
) -> None:
    backend = InputBackend(tablet, backlog=8)
    with connected_frontend(lambda: backend, tmp_path / "t.sock") as frontend:
        eventq, _ = frontend.start_device(2, 64)
        frames = [[(e.EV_ABS, e.ABS_X, i), SYN] for i in range(6)]  # 12 events, room 8
        for frame in frames:
            tablet.inject(frame)
            time.sleep(0.02)
        time.sleep(0.2)
        post_event_buffers(frontend, eventq, 16)
        got = read_events(frontend, eventq, 5)
        # frames 0..3 filled the backlog; frame 4 overran it: SYN_DROPPED, then 4 and 5
        dropped = (e.EV_SYN, e.SYN_DROPPED, 0)
        assert got == [dropped, (3, 0, 4), SYN, (3, 0, 5), SYN]
        assert backend.dropped == 4
        tablet.inject([(e.EV_KEY, e.BTN_LEFT, 1), SYN])  # and it goes on normally
        assert read_events(frontend, eventq, 2) == [(1, e.BTN_LEFT, 1), SYN]


def test_status_queue_led_reaches_the_device(tmp_path: Path) -> None:
    keyboard = SimDevice("keyboard", str(tmp_path / "k.events"))
    try:
        with connected_frontend(lambda: InputBackend(keyboard), tmp_path / "t.sock") as fe:
            _, statusq = fe.start_device(2, 64)
            head = send_status(fe, statusq, (e.EV_LED, e.LED_CAPSL, 1))
            assert statusq.wait_used(1) == [(head, 0)]
            head = send_status(fe, statusq, (e.EV_KEY, e.KEY_A, 1))  # not a status event
            assert statusq.wait_used(1) == [(head, 0)]
        assert keyboard.written == [(e.EV_LED, e.LED_CAPSL, 1)]
    finally:
        keyboard.close()
