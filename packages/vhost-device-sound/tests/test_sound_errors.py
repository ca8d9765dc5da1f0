"""sound's error tree and the fields a handler gets from each error."""

from __future__ import annotations

from pathlib import Path

import pytest

from vhost_device_sound.control_socket import ControlServer
from vhost_device_sound.controls import VOLUME, MasterControls
from vhost_device_sound.errors import (
    AudioBackendError,
    CommandError,
    ControlSocketError,
    ControlValueError,
    InvalidTransition,
    MalformedMessage,
    RequestRefused,
    SoundError,
)
from vhost_device_sound.pcm_state import PcmState, next_state
from vhost_device_sound.protocol import Code, Header, Status
from vhost_device_sound.switches import Switches
from vhost_user_core import BackendError, ProtocolError, VhostUserError


def test_tree_is_rooted_in_the_core() -> None:
    assert issubclass(SoundError, VhostUserError)
    for error in (
        RequestRefused,
        InvalidTransition,
        MalformedMessage,
        ControlValueError,
        CommandError,
        ControlSocketError,
        AudioBackendError,
    ):
        assert issubclass(error, SoundError)
    assert issubclass(MalformedMessage, ProtocolError)
    assert issubclass(AudioBackendError, BackendError)


def test_refusal_carries_its_status() -> None:
    assert RequestRefused(Status.NOT_SUPP, "why").status is Status.NOT_SUPP


def test_invalid_transition_names_command_and_state() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(PcmState.SET_PARAMETERS, Code.PCM_START)
    assert (info.value.command, info.value.state) == (Code.PCM_START, PcmState.SET_PARAMETERS)


def test_control_value_names_the_control() -> None:
    with pytest.raises(ControlValueError) as info:
        MasterControls().write(VOLUME, -1)
    assert (info.value.control_id, info.value.value) == (VOLUME, -1)


def test_short_message_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="needs 4 bytes"):
        Header.decode(b"\0")


def test_control_socket_failure_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    path.write_text("precious")
    with pytest.raises(ControlSocketError) as info:
        ControlServer(path, Switches())
    assert info.value.path == path
