"""The interface every audio backend implements (null, PipeWire, ALSA).

The device drives a backend from its worker thread through the PCM lifecycle
(prepare → start ⇄ stop → release) and passes each stream's PcmRing at prepare. A
backend with its own clock (`drives_clock`) moves samples through the ring from its
host audio thread; one without it (null) leaves pacing to the device's period timer.
`set_active` follows the per-direction switch: a backend must stop moving host audio
for a direction that is not active (PipeWire deactivates the stream), and the ring's
gate enforces the same in C on every period regardless.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from .._pcmring import PcmRing
from ..params import BASE_CAPABILITIES, Capabilities, PcmParams
from ..protocol import Chmap, Direction


@dataclass(frozen=True)
class StreamSetup:
    """What a backend needs to open a host stream at PCM_PREPARE."""

    stream_id: int
    direction: Direction
    params: PcmParams
    positions: tuple[Chmap, ...]
    ring: PcmRing


class AudioBackend(abc.ABC):
    #: The --backend value.
    name: ClassVar[str]
    #: True if a host audio thread consumes/produces ring data at the host's pace.
    drives_clock: ClassVar[bool]
    #: True if that thread runs the playback ring's host cycle hook around each of its
    #: cycles (`_pcmring.host_cycle`, from C without the GIL): the stream's buffers are
    #: then taken and returned there, with no wake-up of the worker (PipeWire).
    host_cycles: ClassVar[bool] = False

    def check_host(self) -> None:
        """Raise BackendError if the host side is not reachable right now (called once
        at start-up, to warn early; PREPARE reports it again, as IO_ERR)."""
        return None

    def capabilities(self, direction: Direction) -> Capabilities:
        """Formats, rates and channel counts offered to the guest for `direction`."""
        return BASE_CAPABILITIES

    @abc.abstractmethod
    def prepare(self, setup: StreamSetup) -> None:
        """Open (or reopen with new parameters) the host stream, inactive. Called again
        after a release or a new SET_PARAMS; must not leave a second host stream behind
        (upstream issue #490). Raises BackendError if the host refuses."""

    @abc.abstractmethod
    def start(self, stream_id: int) -> None:
        """Begin moving samples (if the direction is active)."""

    @abc.abstractmethod
    def stop(self, stream_id: int) -> None:
        """Stop moving samples; the host stream stays open."""

    @abc.abstractmethod
    def release(self, stream_id: int) -> None:
        """Close the host stream."""

    @abc.abstractmethod
    def set_active(self, direction: Direction, active: bool) -> None:
        """The direction's switch changed (also called once per stream at start)."""

    @abc.abstractmethod
    def set_volume(self, direction: Direction, gain: float, muted: bool) -> None:
        """Master volume (linear gain 0..1) and mute, from the guest's controls."""

    @abc.abstractmethod
    def close(self) -> None:
        """The connection ended: release every host resource."""
