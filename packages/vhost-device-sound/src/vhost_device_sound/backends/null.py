"""The null backend: no host audio at all. The device's period timer paces the streams,
so the guest plays and records in real time: output is discarded, input is silence.
With nothing behind it, it offers every rate of the spec and 1 to 8 channels."""

from __future__ import annotations

from ..params import UNLIMITED_CAPABILITIES, Capabilities
from ..protocol import Direction
from .base import AudioBackend, StreamSetup


class NullBackend(AudioBackend):
    name = "null"
    drives_clock = False

    def __init__(self) -> None:
        self.volume: dict[Direction, tuple[float, bool]] = {}

    def capabilities(self, direction: Direction) -> Capabilities:
        """Every rate of the spec, 1 to 8 channels: there are no host limits."""
        return UNLIMITED_CAPABILITIES

    def prepare(self, setup: StreamSetup) -> None:
        pass

    def start(self, stream_id: int) -> None:
        pass

    def stop(self, stream_id: int) -> None:
        pass

    def release(self, stream_id: int) -> None:
        pass

    def set_active(self, direction: Direction, active: bool) -> None:
        pass

    def set_volume(self, direction: Direction, gain: float, muted: bool) -> None:
        self.volume[direction] = (gain, muted)

    def close(self) -> None:
        pass
