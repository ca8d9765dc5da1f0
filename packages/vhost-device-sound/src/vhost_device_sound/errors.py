"""The errors this package raises on purpose, rooted in the core's tree::

    VhostUserError                  vhost_user_core: caught by main_guard (one line)
    └── SoundError                  anything vhost_device_sound raises on purpose
        ├── RequestRefused          a control request answered with `status` (BAD_MSG,
        │                           NOT_SUPP) instead of OK
        ├── InvalidTransition       a PCM `command` not allowed in the stream's `state`
        │                           (also a ValueError; the request gets BAD_MSG)
        ├── MalformedMessage        a virtio-snd message too short for its struct
        │                           (also a ProtocolError: the guest broke the protocol)
        ├── ControlValueError       a control element's `value` outside its range, for
        │                           `control_id` (also a ValueError)
        ├── CommandError            a control-socket line that is not a command; its text
        │                           follows "ERROR " in the answer (also a ValueError)
        ├── ControlSocketError      the control socket at `path` cannot be created
        └── AudioBackendError       the host audio backend failed (also a BackendError):
                                    the request gets IO_ERR

The control queue turns RequestRefused, InvalidTransition, MalformedMessage and
AudioBackendError into
the request's status (`requests.ControlRequests.answer`): none of them reaches the
worker. ControlSocketError ends the daemon at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vhost_user_core import BackendError, ProtocolError, VhostUserError

if TYPE_CHECKING:
    from .pcm_state import PcmState
    from .protocol import Code, Status


class SoundError(VhostUserError):
    """Base of every error vhost_device_sound raises on purpose."""


class RequestRefused(SoundError):
    """A control request answered with `status` (not OK), for the reason given."""

    def __init__(self, status: Status, why: str) -> None:
        super().__init__(why)
        self.status = status


class InvalidTransition(SoundError, ValueError):
    """PCM `command` is not allowed in the stream's `state` (the request gets BAD_MSG)."""

    def __init__(self, command: Code, state: PcmState) -> None:
        super().__init__(f"{command.name} is not allowed in state {state.value}")
        self.command = command
        self.state = state


class MalformedMessage(SoundError, ProtocolError):
    """A virtio-snd message is too short or otherwise malformed (BAD_MSG)."""


class ControlValueError(SoundError, ValueError):
    """A value for control element `control_id` outside its range."""

    def __init__(self, control_id: int, value: int, what: str) -> None:
        super().__init__(what)
        self.control_id = control_id
        self.value = value


class CommandError(SoundError, ValueError):
    """A control-socket line that is not a command; its message follows "ERROR " in the
    answer."""


class ControlSocketError(SoundError):
    """The control socket at `path` cannot be created."""

    def __init__(self, path: object, what: str) -> None:
        super().__init__(what)
        self.path = path


class AudioBackendError(SoundError, BackendError):
    """The host audio backend (ALSA, PipeWire) failed; the guest's request gets
    IO_ERR."""
