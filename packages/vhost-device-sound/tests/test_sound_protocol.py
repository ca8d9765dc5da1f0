"""The virtio-snd codecs against the spec's layouts, and the PCM state machine."""

from __future__ import annotations

import itertools

import pytest

from vhost_device_sound.errors import InvalidTransition
from vhost_device_sound.params import PcmParams
from vhost_device_sound.pcm_state import TRANSITIONS, PcmState, next_state
from vhost_device_sound.protocol import (
    ChmapInfo,
    Code,
    Config,
    CtlInfo,
    Event,
    Format,
    Header,
    ItemHeader,
    JackInfo,
    PcmInfo,
    PcmStatus,
    PcmXfer,
    QueryInfo,
    Rate,
    SetParams,
    ctl_notify_event,
    ctl_values,
    encode_ctl_values,
)
from vhost_user_core import ProtocolError


@pytest.mark.parametrize(
    "message, size",
    [
        (Header, 4),
        (QueryInfo, 16),
        (ItemHeader, 8),
        (SetParams, 24),
        (PcmInfo, 32),
        (ChmapInfo, 24),
        (JackInfo, 24),
        (PcmXfer, 4),
        (PcmStatus, 8),
        (Event, 8),
        (CtlInfo, 96),  # sizeof(struct virtio_snd_ctl_info) in Linux's uapi header
    ],
)
def test_struct_sizes_match_the_spec(message: type, size: int) -> None:
    assert message.FORMAT.size == size  # type: ignore[attr-defined]


def test_set_params_layout() -> None:
    raw = SetParams(Code.PCM_SET_PARAMS, 1, 8192, 2048, 0, 2, 5, 7).encode()
    assert raw == bytes.fromhex("01010000 01000000 00200000 00080000 00000000 02 05 07 00")
    assert SetParams.decode(raw).rate == 7


def test_short_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="needs 24 bytes"):
        SetParams.decode(b"\x01\x01\x00\x00")


def test_config_holds_four_counters() -> None:
    assert Config(0, 2, 2, 2).encode() == bytes.fromhex("00000000 02000000 02000000 02000000")


def test_ctl_values_round_trip() -> None:
    raw = encode_ctl_values([42, -1])
    assert len(raw) == 512
    assert ctl_values(raw)[:3] == (42, -1, 0)
    with pytest.raises(ProtocolError):
        ctl_values(raw[:100])


def test_ctl_notify_event_packs_id_and_mask() -> None:
    event = ctl_notify_event(3, 1)
    assert event.encode() == bytes.fromhex("00120000 0300 0100")


STATES = list(PcmState)
ALLOWED = {
    (PcmState.SET_PARAMETERS, Code.PCM_SET_PARAMS),
    (PcmState.PREPARE, Code.PCM_SET_PARAMS),
    (PcmState.RELEASE, Code.PCM_SET_PARAMS),
    (PcmState.SET_PARAMETERS, Code.PCM_PREPARE),
    (PcmState.PREPARE, Code.PCM_PREPARE),
    (PcmState.RELEASE, Code.PCM_PREPARE),
    (PcmState.PREPARE, Code.PCM_START),
    (PcmState.STOP, Code.PCM_START),
    (PcmState.START, Code.PCM_STOP),
    (PcmState.PREPARE, Code.PCM_RELEASE),
    (PcmState.STOP, Code.PCM_RELEASE),
}


@pytest.mark.parametrize(
    "state, command", list(itertools.product(STATES, TRANSITIONS)), ids=lambda v: v.name
)
def test_every_transition(state: PcmState, command: Code) -> None:
    if (state, command) in ALLOWED:
        assert next_state(state, command) is TRANSITIONS[command][0]
    else:
        with pytest.raises(InvalidTransition):
            next_state(state, command)


@pytest.mark.parametrize(
    "period_ms, periods, per_wakeup",
    [(10, 2, 1), (10, 3, 1), (10, 4, 2), (10, 16, 2), (5, 16, 4), (5, 4, 2), (21, 4, 1), (1, 2, 1)],
)
def test_periods_per_wakeup(period_ms: int, periods: int, per_wakeup: int) -> None:
    period = 48 * period_ms * 4  # 48 kHz stereo S16
    params = PcmParams(Format.S16, Rate.R48000, 2, period * periods, period)
    assert params.periods_per_wakeup == per_wakeup
    assert params.wakeup_frames == 48 * period_ms * per_wakeup
