"""A small binding of libpipewire-0.3's stream API (see _pipewire.pyx): a connection
(thread loop, context, core) and streams whose realtime callback moves samples between
PipeWire and a PcmRing in C, without the GIL."""

from collections.abc import Sequence

from ._pcmring import PcmRing

AUDIO_FORMAT_U8: int
AUDIO_FORMAT_S16_LE: int
AUDIO_FORMAT_S24_32_LE: int
AUDIO_FORMAT_S32_LE: int
AUDIO_FORMAT_F32_LE: int

AUDIO_CHANNEL_UNKNOWN: int
AUDIO_CHANNEL_NA: int
AUDIO_CHANNEL_MONO: int
AUDIO_CHANNEL_FL: int
AUDIO_CHANNEL_FR: int
AUDIO_CHANNEL_FC: int
AUDIO_CHANNEL_LFE: int
AUDIO_CHANNEL_SL: int
AUDIO_CHANNEL_SR: int
AUDIO_CHANNEL_RL: int
AUDIO_CHANNEL_RR: int

class PipeWireError(OSError):
    """PipeWire refused or failed a request; `errno` is set when PipeWire gave one."""

def library_version() -> str:
    """The version of the libpipewire this process loaded."""

class PipeWireConnection:
    """A thread loop, a context and a connected core. Connecting waits (up to `timeout`
    seconds) for the daemon to answer; PipeWireError if there is none."""

    def __init__(
        self, app_name: str = "vhost-device-sound", remote: str | None = None, timeout: float = 5.0
    ) -> None: ...
    @property
    def connected(self) -> bool:
        """True while the core is connected and has reported no error."""
    @property
    def error(self) -> str | None: ...
    def close(self) -> None:
        """Destroy every stream, disconnect and stop the thread loop. Idempotent."""
    def create_stream(
        self,
        *,
        playback: bool,
        name: str,
        properties: dict[str, str],
        audio_format: int,
        rate: int,
        positions: Sequence[int],
        frame_bytes: int,
        ring: PcmRing,
        timeout: float = 5.0,
    ) -> PipeWireStream:
        """Connect an inactive, autoconnected stream offering exactly this format, and
        wait until PipeWire accepted (PAUSED) or refused it."""

class PipeWireStream:
    """One connected pw_stream; made by PipeWireConnection.create_stream()."""

    def destroy(self) -> None:
        """Disconnect and free the stream; PipeWire no longer touches the ring after."""
    @property
    def destroyed(self) -> bool: ...
    def set_active(self, active: bool) -> None: ...
    @property
    def active(self) -> bool: ...
    def set_volume(self, volumes: Sequence[float], mute: bool) -> None:
        """Per-channel linear volumes and mute, kept and applied again once PipeWire
        announces the stream's controls."""
    @property
    def node_id(self) -> int: ...
    @property
    def state(self) -> str:
        """error, unconnected, connecting, paused, streaming, or destroyed."""
    @property
    def error(self) -> str | None: ...
    def counters(self) -> dict[str, int]:
        """Realtime counters in frames: cycles, ring, silent, dropped."""
