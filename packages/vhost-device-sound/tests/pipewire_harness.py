"""A headless PipeWire session for tests, and the audio helpers tests use with it.

`PipeWireSession` starts, in a temporary XDG_RUNTIME_DIR, a private session bus,
`pipewire` and `wireplumber` (PipeWire 1.4 / WirePlumber 0.5 config syntax), all as the
current user (root on CI), with config drop-ins of its own and nothing read from or
written to /etc or the user's home:

- SINK, a null sink (support.null-audio-sink, Audio/Sink): the default sink, so an
  AUTOCONNECT playback stream lands on it; `Recording` captures its monitor.
- SOURCE, a virtual microphone (Audio/Source): the default source, so an AUTOCONNECT
  capture stream lands on it. It is the playback half of a loopback whose capture half
  is the sink SOURCE_FEED, because WirePlumber will not link a player straight into a
  source node; `play()` into SOURCE_FEED comes out of SOURCE.

It waits until the daemon answers and WirePlumber has made both nodes the defaults, and
gives the environment a client needs (`client_env`). Signal helpers at the end make
test tones and measure them (a Goertzel filter over 20 ms blocks).
"""

from __future__ import annotations

import array
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

SINK = "vhost-test-sink"
SOURCE = "vhost-test-source"
SOURCE_FEED = "vhost-test-source-feed"

#: The programs the session needs (Debian: pipewire, pipewire-bin, wireplumber, dbus).
TOOLS = ("dbus-daemon", "pipewire", "wireplumber", "pw-dump", "pw-record", "pw-play")

#: Variables that would point a client (or the daemons) somewhere else.
FOREIGN_VARIABLES = (
    "PIPEWIRE_REMOTE",
    "PIPEWIRE_RUNTIME_DIR",
    "PIPEWIRE_CONFIG_DIR",
    "PIPEWIRE_CONFIG_NAME",
    "PIPEWIRE_DEBUG",
    "PIPEWIRE_PROPS",
    "WIREPLUMBER_CONFIG_DIR",
    "DISPLAY",
)

# Session priorities decide WirePlumber's defaults: the highest wins, and the sink's
# monitor also competes for the default source, so the microphone must beat it.
PIPEWIRE_DROPIN = f"""
context.properties = {{
    module.x11.bell = false
    module.rt = {{realtime}}
}}
context.objects = [
    {{ factory = adapter
        args = {{
            factory.name = support.null-audio-sink
            node.name = "{SINK}"
            node.description = "vhost test sink"
            media.class = "Audio/Sink"
            audio.position = [ FL FR ]
            priority.session = 1000
            priority.driver = 1000
        }}
    }}
]
context.modules = [
    {{ name = libpipewire-module-loopback
        args = {{
            node.description = "vhost test microphone"
            audio.position = [ FL FR ]
            capture.props = {{
                node.name = "{SOURCE_FEED}"
                media.class = "Audio/Sink"
                priority.session = 100
            }}
            playback.props = {{
                node.name = "{SOURCE}"
                media.class = "Audio/Source"
                priority.session = 2000
            }}
        }}
    }}
]
"""

# No hardware to look for; no portal or device reservation without a desktop.
WIREPLUMBER_DROPIN = """
wireplumber.profiles = {
    main = {
        monitor.alsa = disabled
        monitor.alsa-midi = disabled
        monitor.bluez = disabled
        monitor.bluez-midi = disabled
        monitor.v4l2 = disabled
        monitor.libcamera = disabled
        support.reserve-device = disabled
        support.portal-permissionstore = disabled
    }
}
"""


class HarnessError(RuntimeError):
    """The PipeWire session could not be started or did not answer."""


@dataclass(frozen=True)
class PcmFormat:
    """A raw PCM layout. `sample` is one of SAMPLE_CODECS; the pw-cat formats are u8,
    s16, s32 and f32 (s24_32 exists only for what tests write into a ring)."""

    sample: str = "f32"
    rate: int = 48000
    channels: int = 2

    @property
    def sample_bytes(self) -> int:
        return SAMPLE_CODECS[self.sample][0]

    @property
    def frame_bytes(self) -> int:
        return self.sample_bytes * self.channels

    def bytes_for(self, seconds: float) -> int:
        return int(seconds * self.rate) * self.frame_bytes

    def pw_cat_args(self) -> list[str]:
        if self.sample == "s24_32":
            raise ValueError("pw-cat has no 24-in-32-bit format")
        return ["--format", self.sample, "--rate", str(self.rate), "--channels", str(self.channels)]


class PipeWireSession:
    """pipewire + wireplumber + a session bus under `root` (see module doc). With
    `realtime`, PipeWire's data thread asks for realtime scheduling (its module-rt), as
    a desktop's does; tests leave it off, so a loaded machine slows the graph rather
    than the tests' own processes (the bench turns it on)."""

    def __init__(self, root: Path, *, realtime: bool = False) -> None:
        self.root = root
        self.realtime = realtime
        self.runtime_dir = root / "run"
        self.config_home = root / "config"
        self.state_home = root / "state"
        self.logs = root / "logs"
        self.bus_address = f"unix:path={self.runtime_dir / 'bus'}"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._names = count()

    # -- environment ---------------------------------------------------------------------

    @property
    def client_env(self) -> dict[str, str]:
        """What a client needs on top of a clean environment (FOREIGN_VARIABLES unset)."""
        return {
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
        }

    @property
    def env(self) -> dict[str, str]:
        """A complete environment for client processes (pw-record, pw-play, a daemon)."""
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES}
        env.update(self.client_env)
        return env

    def _daemon_env(self) -> dict[str, str]:
        env = self.env
        env["XDG_CONFIG_HOME"] = str(self.config_home)
        env["XDG_STATE_HOME"] = str(self.state_home)
        return env

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise HarnessError(
                f"missing {', '.join(missing)}: install the Debian packages pipewire, "
                "pipewire-bin, wireplumber and dbus (`python3 xtask test` does)"
            )
        self._write_config()
        try:
            bus = ["dbus-daemon", "--session", "--nofork", "--nopidfile"]
            self._spawn("dbus", [*bus, f"--address={self.bus_address}"])
            self.wait_until(
                lambda: (self.runtime_dir / "bus").exists(), timeout, "the session bus socket"
            )
            self._spawn("pipewire", ["pipewire"])
            self.wait_until(self._answers, timeout, "pipewire to answer")
            self._spawn("wireplumber", ["wireplumber"])
            self.wait_until(self._defaults_ready, timeout, "WirePlumber to pick the defaults")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop wireplumber, pipewire and the bus (SIGTERM, then SIGKILL). Idempotent."""
        while self._procs:
            _name, proc = self._procs.pop()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def __enter__(self) -> PipeWireSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o700)  # libpipewire insists on a private runtime dir
        self.state_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        pw_dir = self.config_home / "pipewire" / "pipewire.conf.d"
        wp_dir = self.config_home / "wireplumber" / "wireplumber.conf.d"
        pw_dir.mkdir(parents=True, exist_ok=True)
        wp_dir.mkdir(parents=True, exist_ok=True)
        rt = "true" if self.realtime else "false"
        (pw_dir / "90-vhost-test.conf").write_text(PIPEWIRE_DROPIN.replace("{realtime}", rt))
        (wp_dir / "90-vhost-test.conf").write_text(WIREPLUMBER_DROPIN)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=self._daemon_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a test's Ctrl-C is not the daemon's
        )
        log.close()
        self._procs.append((name, proc))

    def _check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise HarnessError(f"{name} exited with status {proc.returncode}:\n{log}")

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it is true; HarnessError naming `what` after `timeout` s
        (or at once if a daemon died)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if not (self.runtime_dir / "pipewire-0").exists():
            return False
        return self._run(["pw-dump"], check=False).returncode == 0

    def _defaults_ready(self) -> bool:
        objects = self.dump()
        names = {node_props(o).get("node.name") for o in objects if is_node(o)}
        if not {SINK, SOURCE, SOURCE_FEED} <= names:
            return False
        defaults = default_nodes(objects)
        return defaults.get("default.audio.sink") == SINK and (
            defaults.get("default.audio.source") == SOURCE
        )

    # -- inspection ----------------------------------------------------------------------

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=10, check=check
        )

    def dump(self) -> list[dict[str, Any]]:
        """Every object in the graph, as pw-dump prints it."""
        out = self._run(["pw-dump"]).stdout
        objects: list[dict[str, Any]] = json.loads(out) if out.strip() else []
        return objects

    def nodes(self, name: str | None = None) -> list[dict[str, Any]]:
        """Node objects, optionally only those with node.name `name`."""
        return [
            o
            for o in self.dump()
            if is_node(o) and (name is None or node_props(o).get("node.name") == name)
        ]

    # -- audio in and out ----------------------------------------------------------------

    @contextmanager
    def recording(self, fmt: PcmFormat, target: str = SINK) -> Iterator[Recording]:
        """Record `target` while the block runs (a sink: its monitor). The block starts
        once the recorder is linked; read `Recording.data` after it."""
        name = f"vhost-test-recorder-{next(self._names)}"
        path = self.root / f"{name}.raw"
        props = f"{{ node.name = {name} stream.capture.sink = true }}"
        with path.open("wb") as out:
            # Raw mode writes to stdout in pw-cat 1.4 whatever the file name says.
            proc = subprocess.Popen(
                ["pw-record", "-P", props, "--target", target, *fmt.pw_cat_args(), "--raw", "-"],
                env=self.env,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        recording = Recording(fmt, path)
        try:
            self.wait_until(lambda: self._linked(name), 10, f"{name} to be linked to {target}")
            yield recording
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        recording.data = path.read_bytes()
        path.unlink()

    def record(self, seconds: float, fmt: PcmFormat, target: str = SINK) -> bytes:
        """`seconds` of `target` (a sink: its monitor) as raw PCM."""
        with self.recording(fmt, target) as rec:
            time.sleep(seconds)
        return rec.data

    def play(self, pcm: bytes, fmt: PcmFormat, target: str = SOURCE_FEED) -> None:
        """Play raw PCM into `target` (by default what comes out of SOURCE) and return
        once pw-play has drained it."""
        proc = subprocess.Popen(
            ["pw-play", "--target", target, *fmt.pw_cat_args(), "--raw", "-"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(pcm, timeout=10 + len(pcm) / (fmt.frame_bytes * fmt.rate))
        if proc.returncode != 0:
            raise HarnessError(f"pw-play failed ({proc.returncode}): {err.decode()}")

    def loop_sink_into_source(self) -> None:
        """Link the sink's monitor into the microphone's feed: whatever plays into the
        sink is then captured from the source (a round trip through the graph)."""
        for channel_name in ("FL", "FR"):
            self._run(
                [
                    "pw-link",
                    f"{SINK}:monitor_{channel_name}",
                    f"{SOURCE_FEED}:playback_{channel_name}",
                ]
            )

    def _linked(self, node_name: str) -> bool:
        objects = self.dump()
        ids = {
            o["id"] for o in objects if is_node(o) and node_props(o).get("node.name") == node_name
        }
        return any(
            o.get("type") == "PipeWire:Interface:Link"
            and (o.get("info") or {}).get("input-node-id") in ids
            and (o.get("info") or {}).get("state") == "active"
            for o in objects
        )


@dataclass
class Recording:
    fmt: PcmFormat
    path: Path
    data: bytes = b""


# -- pw-dump helpers -----------------------------------------------------------------------


def is_node(obj: dict[str, Any]) -> bool:
    return obj.get("type") == "PipeWire:Interface:Node"


def node_props(obj: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = (obj.get("info") or {}).get("props") or {}
    return props


def node_param(obj: dict[str, Any], param: str, key: str) -> Any:
    """A value from a node's params (e.g. "Props", "channelVolumes"), None if absent."""
    for entry in ((obj.get("info") or {}).get("params") or {}).get(param) or []:
        if isinstance(entry, dict) and key in entry:
            return entry[key]
    return None


def default_nodes(objects: list[dict[str, Any]]) -> dict[str, str]:
    """default.audio.sink / default.audio.source -> node name, from the "default"
    metadata."""
    found: dict[str, str] = {}
    for obj in objects:
        if obj.get("type") != "PipeWire:Interface:Metadata":
            continue
        if (obj.get("props") or {}).get("metadata.name") != "default":
            continue
        for entry in obj.get("metadata") or []:
            value = entry.get("value")
            if isinstance(value, dict) and "name" in value:
                found[entry.get("key", "")] = value["name"]
    return found


# -- signals -------------------------------------------------------------------------------

#: sample name -> (bytes, array typecode, full scale, offset)
SAMPLE_CODECS: dict[str, tuple[int, str, float, float]] = {
    "u8": (1, "B", 127.0, 128.0),
    "s16": (2, "h", 32767.0, 0.0),
    "s24_32": (4, "i", 8388607.0, 0.0),
    "s32": (4, "i", 2147483647.0, 0.0),
    "f32": (4, "f", 1.0, 0.0),
}

#: Analysis block: 20 ms, so any tone at a multiple of 50 Hz has whole periods in it.
BLOCK_SECONDS = 0.02
#: A block with less mean power than this (-60 dBFS) counts as silent.
ACTIVE_POWER = 1e-6


def tone(freq: float, seconds: float, fmt: PcmFormat, amplitude: float = 0.5) -> bytes:
    """A sine at `freq` Hz on every channel, encoded as `fmt`."""
    size, code, scale, offset = SAMPLE_CODECS[fmt.sample]
    frames = int(seconds * fmt.rate)
    step = 2 * math.pi * freq / fmt.rate
    values = array.array(code)
    for i in range(frames):
        v = amplitude * math.sin(step * i) * scale + offset
        sample = v if code == "f" else round(v)
        values.extend([sample] * fmt.channels)  # type: ignore[list-item]
    return values.tobytes()


def channel(pcm: bytes, fmt: PcmFormat, index: int = 0) -> list[float]:
    """One channel of raw PCM as floats in -1..1 (a trailing partial frame is ignored)."""
    size, code, scale, offset = SAMPLE_CODECS[fmt.sample]
    usable = len(pcm) - len(pcm) % fmt.frame_bytes
    values = array.array(code, pcm[:usable])
    return [(v - offset) / scale for v in values[index :: fmt.channels]]


def goertzel_power(x: Sequence[float], freq: float, rate: int) -> float:
    """|X(freq)|^2 of `x`: a single-bin DFT (Goertzel filter)."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


@dataclass(frozen=True)
class ToneReport:
    """What `analyse` found: seconds of non-silent blocks, the share of their energy at
    the tone's frequency (1.0: a pure tone), and the peak amplitude (0..1)."""

    active_seconds: float
    purity: float
    peak: float


def analyse(x: Sequence[float], freq: float, rate: int) -> ToneReport:
    """Measure a tone block by block (20 ms), so silence before and after it (recorder
    start-up, a dry ring) does not dilute the result. `freq` should be a multiple of
    50 Hz (whole periods per block: no leakage out of its bin)."""
    block = int(rate * BLOCK_SECONDS)
    active = 0
    tone_energy = total_energy = 0.0
    for start in range(0, len(x) - block + 1, block):
        chunk = x[start : start + block]
        energy = sum(v * v for v in chunk)
        if energy / block < ACTIVE_POWER:
            continue
        active += 1
        total_energy += energy
        tone_energy += 2 * goertzel_power(chunk, freq, rate) / block
    peak = max((abs(v) for v in x), default=0.0)
    purity = tone_energy / total_energy if total_energy else 0.0
    return ToneReport(active * BLOCK_SECONDS, purity, peak)
