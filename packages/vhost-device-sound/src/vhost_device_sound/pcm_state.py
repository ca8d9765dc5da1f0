"""The PCM command lifecycle of VIRTIO 1.3 §5.14.6.6.1, as a pure state machine.

    SET_PARAMETERS -> PREPARE -> START <-> STOP -> RELEASE -> (SET_PARAMETERS | PREPARE)

A command not allowed in the current state is refused (the device answers BAD_MSG) and
the state does not change. Linux follows this exactly: hw_params sends SET_PARAMS,
prepare sends PREPARE (again after an xrun), trigger START/STOP (also for pause), and
sync_stop sends RELEASE and waits for every pending buffer to come back.
"""

from __future__ import annotations

import enum

from .errors import InvalidTransition
from .protocol import Code


class PcmState(enum.Enum):
    SET_PARAMETERS = "set-parameters"
    PREPARE = "prepare"
    START = "start"
    STOP = "stop"
    RELEASE = "release"


S = PcmState
#: command -> (state it leads to, states it is allowed from)
TRANSITIONS: dict[Code, tuple[PcmState, frozenset[PcmState]]] = {
    Code.PCM_SET_PARAMS: (S.SET_PARAMETERS, frozenset({S.SET_PARAMETERS, S.PREPARE, S.RELEASE})),
    Code.PCM_PREPARE: (S.PREPARE, frozenset({S.SET_PARAMETERS, S.PREPARE, S.RELEASE})),
    Code.PCM_START: (S.START, frozenset({S.PREPARE, S.STOP})),
    Code.PCM_STOP: (S.STOP, frozenset({S.START})),
    Code.PCM_RELEASE: (S.RELEASE, frozenset({S.PREPARE, S.STOP})),
}

#: States in which the stream takes I/O buffers (queued until played or captured).
ACCEPTS_IO = frozenset({S.PREPARE, S.START, S.STOP})


def next_state(state: PcmState, command: Code) -> PcmState:
    """The state `command` leads to from `state`; InvalidTransition if not allowed."""
    target, allowed = TRANSITIONS[command]
    if state not in allowed:
        raise InvalidTransition(command, state)
    return target


#: A stream starts as if SET_PARAMETERS had been done with the default parameters, so a
#: driver may PREPARE right away (upstream does the same).
INITIAL_STATE = S.SET_PARAMETERS
