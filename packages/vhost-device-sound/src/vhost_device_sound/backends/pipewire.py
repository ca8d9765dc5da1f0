"""The PipeWire backend: one PipeWire stream per virtio stream, fed from its PcmRing by a
realtime callback in C (see _pipewire.pyx), so the host's audio graph is the clock.

Policy lives here, the binding in _pipewire: which formats and rates the guest is
offered, how virtio channel positions map to SPA's, which properties the node gets, and
when a stream is active. A PipeWire stream runs exactly while the guest has started it
AND its direction's switch is on; the ring's gate enforces the switch again in C on
every period, so a late `set_active` can never leak host audio into the guest.

Unlike upstream, PREPARE destroys the stream it replaces (issue #490 left duplicates
behind after repeated SET_PARAMS/PREPARE), and a dry ring plays silence rather than the
previous buffer (upstream's "choppy audio").
"""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import TypedDict

from .. import _pipewire as pw
from ..errors import AudioBackendError
from ..params import BASE_RATES, HIGH_RATES, MIN_WAKEUP_SECONDS, Capabilities
from ..protocol import Chmap, Direction, Format
from .base import AudioBackend, StreamSetup

logger = logging.getLogger(__name__)

#: virtio sample format -> SPA audio format (all little-endian; S24 is 24 bits in 32).
FORMATS: dict[Format, int] = {
    Format.U8: pw.AUDIO_FORMAT_U8,
    Format.S16: pw.AUDIO_FORMAT_S16_LE,
    Format.S24: pw.AUDIO_FORMAT_S24_32_LE,
    Format.S32: pw.AUDIO_FORMAT_S32_LE,
    Format.FLOAT: pw.AUDIO_FORMAT_F32_LE,
}

#: virtio channel position -> SPA channel position.
POSITIONS: dict[Chmap, int] = {
    Chmap.NONE: pw.AUDIO_CHANNEL_UNKNOWN,
    Chmap.NA: pw.AUDIO_CHANNEL_NA,
    Chmap.MONO: pw.AUDIO_CHANNEL_MONO,
    Chmap.FL: pw.AUDIO_CHANNEL_FL,
    Chmap.FR: pw.AUDIO_CHANNEL_FR,
    Chmap.RL: pw.AUDIO_CHANNEL_RL,
    Chmap.RR: pw.AUDIO_CHANNEL_RR,
    Chmap.FC: pw.AUDIO_CHANNEL_FC,
    Chmap.LFE: pw.AUDIO_CHANNEL_LFE,
    Chmap.SL: pw.AUDIO_CHANNEL_SL,
    Chmap.SR: pw.AUDIO_CHANNEL_SR,
}

CAPABILITIES = Capabilities(frozenset(FORMATS), BASE_RATES | HIGH_RATES, 1, 6)

#: How long to wait for the daemon to answer (connect, stream set-up).
TIMEOUT = 5.0


def node_name(direction: Direction) -> str:
    """The PipeWire node name of a direction's stream (what pw-dump and mixers show)."""
    return f"vhost-device-sound-{direction.label}"


def where_is_pipewire(remote: str | None = None) -> str:
    """The socket a client would try, from the same variables libpipewire reads."""
    name = remote or os.environ.get("PIPEWIRE_REMOTE") or "pipewire-0"
    if name.startswith("/"):
        return name
    runtime = os.environ.get("PIPEWIRE_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR")
    return f"{runtime}/{name}" if runtime else f"/run/pipewire/{name} (XDG_RUNTIME_DIR is unset)"


class StreamInfo(TypedDict):
    """What PipeWire made of a stream; the counters are in frames since PREPARE."""

    node_id: int
    node_name: str
    state: str  # PipeWire's: error, unconnected, connecting, paused, streaming
    error: str | None
    started: bool
    active: bool
    cycles: int  # realtime callbacks that had a buffer
    ring: int  # frames moved between the ring and PipeWire
    silent: int  # playback frames padded with silence (ring dry or switch off)
    dropped: int  # capture frames the ring did not take (switch off or full)


@dataclass
class _Stream:
    setup: StreamSetup
    host: pw.PipeWireStream
    started: bool = False


class PipeWireBackend(AudioBackend):
    name = "pipewire"
    drives_clock = True

    def __init__(self, *, remote: str | None = None) -> None:
        """`remote`: a socket name or absolute path; by default libpipewire's own
        lookup (PIPEWIRE_REMOTE, PIPEWIRE_RUNTIME_DIR, XDG_RUNTIME_DIR). The connection
        is made at the first PREPARE, so a missing daemon fails that request only."""
        self._remote = remote
        self._conn: pw.PipeWireConnection | None = None
        self._streams: dict[int, _Stream] = {}
        self._active: dict[Direction, bool] = {}
        self._volume: dict[Direction, tuple[float, bool]] = {}
        # The worker and the switch listeners (control socket thread) both call in.
        self._lock = threading.RLock()

    def check_host(self) -> None:
        with self._lock:
            self._connection()

    def capabilities(self, direction: Direction) -> Capabilities:
        return CAPABILITIES

    # -- lifecycle -----------------------------------------------------------------------

    def prepare(self, setup: StreamSetup) -> None:
        spa_format, positions = self._describe(setup)
        direction = setup.direction
        params = setup.params
        with self._lock:
            self._drop(setup.stream_id)  # never two host streams for one virtio stream
            conn = self._connection()
            try:
                host = conn.create_stream(
                    playback=direction is Direction.OUTPUT,
                    name=f"vhost-device-sound {direction.label}",
                    properties=self._properties(setup),
                    audio_format=spa_format,
                    rate=params.rate.hz,
                    positions=positions,
                    frame_bytes=params.frame_bytes,
                    ring=setup.ring,
                    timeout=TIMEOUT,
                )
            except (pw.PipeWireError, ValueError) as exc:
                raise AudioBackendError(
                    f"PipeWire refused the {direction.label} stream "
                    f"({params.format.name}, {params.rate.hz} Hz, {params.channels} ch): {exc}"
                ) from exc
            stream = _Stream(setup, host)
            self._streams[setup.stream_id] = stream
            if direction in self._volume:
                self._push_volume(stream, *self._volume[direction])
            logger.info(
                "PipeWire node %d (%s): %s %d Hz %d ch, period %d frames",
                host.node_id,
                node_name(direction),
                params.format.name,
                params.rate.hz,
                params.channels,
                params.period_frames,
            )

    def start(self, stream_id: int) -> None:
        with self._lock:
            stream = self._prepared(stream_id)
            if self._conn is None or not self._conn.connected or stream.host.state == "error":
                # Without its daemon the stream would never consume: the guest would
                # wait forever for its buffers. It needs a new PREPARE (which reconnects).
                reason = stream.host.error or (self._conn.error if self._conn else None)
                raise AudioBackendError(
                    f"the PipeWire {stream.setup.direction.label} stream is gone: {reason}"
                )
            stream.started = True
            self._apply(stream)

    def stop(self, stream_id: int) -> None:
        with self._lock:
            stream = self._prepared(stream_id)
            stream.started = False
            self._apply(stream)

    def release(self, stream_id: int) -> None:
        with self._lock:
            self._drop(stream_id)

    def set_active(self, direction: Direction, active: bool) -> None:
        with self._lock:
            self._active[direction] = active
            for stream in self._streams.values():
                if stream.setup.direction is direction:
                    self._apply(stream)

    def set_volume(self, direction: Direction, gain: float, muted: bool) -> None:
        gain = min(max(gain, 0.0), 1.0) if math.isfinite(gain) else 0.0
        with self._lock:
            self._volume[direction] = (gain, muted)
            for stream in self._streams.values():
                if stream.setup.direction is direction:
                    self._push_volume(stream, gain, muted)

    def close(self) -> None:
        with self._lock:
            for stream_id in list(self._streams):
                self._drop(stream_id)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- diagnostics ---------------------------------------------------------------------

    def stream_info(self, stream_id: int) -> StreamInfo | None:
        """What PipeWire made of a stream, None if it has none (logs, tests)."""
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None:
                return None
            host = stream.host
            counters = host.counters()
            return StreamInfo(
                node_id=host.node_id,
                node_name=node_name(stream.setup.direction),
                state=host.state,
                error=host.error,
                started=stream.started,
                active=host.active,
                cycles=counters["cycles"],
                ring=counters["ring"],
                silent=counters["silent"],
                dropped=counters["dropped"],
            )

    # -- helpers -------------------------------------------------------------------------

    def _connection(self) -> pw.PipeWireConnection:
        """The live connection, made (or remade, after the daemon went away) on demand."""
        conn = self._conn
        if conn is not None and conn.connected:
            return conn
        if conn is not None:
            logger.warning("PipeWire connection lost (%s): reconnecting", conn.error)
            for stream_id in list(self._streams):
                self._drop(stream_id)
            conn.close()
            self._conn = None
        try:
            conn = pw.PipeWireConnection("vhost-device-sound", self._remote, TIMEOUT)
        except pw.PipeWireError as exc:
            # libpipewire reports a missing socket file as EHOSTDOWN ("Host is down").
            missing = exc.errno in (errno.EHOSTDOWN, errno.ENOENT, errno.ECONNREFUSED)
            reason = "no PipeWire daemon is listening there" if missing else exc.strerror
            raise AudioBackendError(
                f"cannot connect to PipeWire at {where_is_pipewire(self._remote)}: "
                f"{reason}. Is the PipeWire daemon running for this user? "
                "Point XDG_RUNTIME_DIR (or PIPEWIRE_RUNTIME_DIR) at its runtime directory "
                "or PIPEWIRE_REMOTE at its socket, or choose --backend null."
            ) from exc
        self._conn = conn
        return conn

    def _describe(self, setup: StreamSetup) -> tuple[int, list[int]]:
        """The SPA format and channel positions for `setup`, or a BackendError."""
        params = setup.params
        if params.format not in FORMATS:
            raise AudioBackendError(
                f"the PipeWire backend cannot play {params.format.name} "
                f"(it offers {', '.join(f.name for f in FORMATS)})"
            )
        if not CAPABILITIES.channels_min <= params.channels <= CAPABILITIES.channels_max:
            raise AudioBackendError(f"the PipeWire backend cannot open {params.channels} channels")
        if len(setup.positions) != params.channels:
            raise AudioBackendError(
                f"{len(setup.positions)} channel positions for {params.channels} channels"
            )
        return FORMATS[params.format], [POSITIONS[Chmap(p)] for p in setup.positions]

    @staticmethod
    def _properties(setup: StreamSetup) -> dict[str, str]:
        direction = setup.direction
        params = setup.params
        props = {
            "media.type": "Audio",
            "media.category": "Playback" if direction is Direction.OUTPUT else "Capture",
            "node.name": node_name(direction),
            "node.description": f"vhost-device-sound {direction.label}",
            "application.name": "vhost-device-sound",
        }
        if params.period_frames > 0:
            # The guest's period (several of them if they are short) sets PipeWire's
            # quantum when it is the smallest request: one wake-up of the daemon each.
            # Not for capture beyond MIN_WAKEUP_SECONDS: a capture buffer can only go
            # back once the quantum holding its last frame has arrived, and quanta of
            # up to PipeWire's maximum (170 ms at 48 kHz) would hand a guest that asked
            # for long periods its audio that much late. The ring still wakes the
            # daemon once per guest period.
            frames = params.wakeup_frames
            if direction is Direction.INPUT:
                frames = min(frames, math.ceil(MIN_WAKEUP_SECONDS * params.rate.hz))
            props["node.latency"] = f"{frames}/{params.rate.hz}"
        return props

    def _prepared(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise AudioBackendError(f"stream {stream_id} has no PipeWire stream (not prepared)")
        return stream

    def _apply(self, stream: _Stream) -> None:
        """Make the host stream active exactly while started and its direction is on."""
        direction = stream.setup.direction
        enabled = self._active.get(direction, stream.setup.ring.switch.enabled)
        want = stream.started and enabled
        if stream.host.active == want:
            return
        try:
            stream.host.set_active(want)
        except pw.PipeWireError as exc:
            raise AudioBackendError(f"PipeWire {direction.label} stream: {exc}") from exc
        logger.debug("PipeWire %s stream %s", direction.label, "active" if want else "inactive")

    def _push_volume(self, stream: _Stream, gain: float, muted: bool) -> None:
        try:
            stream.host.set_volume([gain] * stream.setup.params.channels, muted)
        except pw.PipeWireError as exc:
            label = stream.setup.direction.label
            raise AudioBackendError(f"PipeWire volume of the {label}: {exc}") from exc

    def _drop(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream.host.destroy()
