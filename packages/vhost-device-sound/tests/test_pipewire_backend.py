"""PipeWireBackend against a real, headless PipeWire (see pipewire_harness.py).

The backend is driven directly with a PcmRing and its Switch, as the device's worker
would; what reaches PipeWire is checked at the null sink's monitor and, for capture, in
the ring. Each test keeps its audio to about a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pipewire_harness import (
    FOREIGN_VARIABLES,
    PcmFormat,
    PipeWireSession,
    analyse,
    channel,
    node_param,
    node_props,
    tone,
)

from vhost_device_sound._pcmring import PcmRing, Switch
from vhost_device_sound.backends import backend_class
from vhost_device_sound.backends.base import StreamSetup
from vhost_device_sound.backends.pipewire import PipeWireBackend, node_name
from vhost_device_sound.params import BASE_RATES, DEFAULT_POSITIONS, HIGH_RATES, PcmParams
from vhost_device_sound.protocol import SAMPLE_BYTES, Direction, Format, Rate
from vhost_user_core import BackendError

OUTPUT = Direction.OUTPUT
INPUT = Direction.INPUT
#: What the sink monitor is recorded as.
REC = PcmFormat("f32", 48000, 2)
#: A tone frequency with whole periods in the analysis blocks (a multiple of 50 Hz).
FREQ = 1000
#: Below this peak (-80 dBFS) a recording counts as silence.
SILENT = 1e-4

#: virtio format -> the harness's sample codec for it.
CODECS = {
    Format.U8: "u8",
    Format.S16: "s16",
    Format.S24: "s24_32",
    Format.S32: "s32",
    Format.FLOAT: "f32",
}


def make_setup(
    ring: PcmRing,
    *,
    direction: Direction = OUTPUT,
    fmt: Format = Format.S16,
    rate: Rate = Rate.R48000,
    channels: int = 2,
    period_frames: int = 1024,
) -> StreamSetup:
    period = period_frames * SAMPLE_BYTES[fmt] * channels
    params = PcmParams(fmt, rate, channels, 4 * period, period)
    return StreamSetup(int(direction), direction, params, DEFAULT_POSITIONS[channels], ring)


def ring_format(setup: StreamSetup) -> PcmFormat:
    params = setup.params
    return PcmFormat(CODECS[params.format], params.rate.hz, params.channels)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


def play_out(backend: PipeWireBackend, ring: PcmRing, tail: float = 0.15) -> None:
    """Start stream 0 and wait until the ring is empty plus `tail` seconds (the last
    quantum's way through the graph)."""
    backend.start(0)
    backend.set_active(OUTPUT, ring.switch.enabled)
    wait_for(lambda: ring.fill == 0, what="the ring to drain")
    time.sleep(tail)


@pytest.fixture
def backend(pipewire: PipeWireSession) -> Iterator[PipeWireBackend]:
    backend = PipeWireBackend()
    yield backend
    backend.close()


# -- without a daemon ---------------------------------------------------------------------


def test_registry_and_capabilities() -> None:
    assert backend_class("pipewire") is PipeWireBackend
    assert PipeWireBackend.drives_clock
    caps = PipeWireBackend().capabilities(OUTPUT)
    assert caps.formats == {Format.U8, Format.S16, Format.S24, Format.S32, Format.FLOAT}
    assert caps.rates == BASE_RATES | HIGH_RATES
    assert min(r.hz for r in caps.rates) == 8000 and max(r.hz for r in caps.rates) == 192000
    assert (caps.channels_min, caps.channels_max) == (1, 6)


def test_unsupported_format_is_refused_before_connecting() -> None:
    backend = PipeWireBackend(remote="/nonexistent/pipewire-0")
    ring = PcmRing(4096, Switch(True))
    with pytest.raises(BackendError, match="cannot play S8"):
        backend.prepare(make_setup(ring, fmt=Format.S8))
    with pytest.raises(BackendError, match="not prepared"):
        backend.start(0)
    backend.close()


@pytest.mark.parametrize("how", ["XDG_RUNTIME_DIR", "PIPEWIRE_REMOTE"])
def test_no_daemon_is_a_clear_backend_error(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    socket = f"{tmp_path}/pipewire-0"
    if how == "PIPEWIRE_REMOTE":
        monkeypatch.setenv("PIPEWIRE_REMOTE", socket)
    backend = PipeWireBackend()
    with pytest.raises(BackendError) as failure:
        backend.prepare(make_setup(PcmRing(4096, Switch(True))))
    message = str(failure.value)
    assert f"cannot connect to PipeWire at {socket}" in message
    assert "XDG_RUNTIME_DIR" in message and "PIPEWIRE_REMOTE" in message
    backend.close()
    backend.close()


# -- playback -----------------------------------------------------------------------------


def test_playback_tone_reaches_the_sink(
    pipewire: PipeWireSession, backend: PipeWireBackend
) -> None:
    ring = PcmRing(REC.bytes_for(2), Switch(True))
    setup = make_setup(ring)
    ring.write(tone(FREQ, 1.0, ring_format(setup)))
    backend.prepare(setup)
    with pipewire.recording(REC) as rec:
        play_out(backend, ring)
    for index in range(2):
        report = analyse(channel(rec.data, REC, index), FREQ, REC.rate)
        assert report.active_seconds >= 0.9, report
        assert report.purity > 0.95, report
        assert 0.4 < report.peak < 0.6, report
    info = backend.stream_info(0)
    assert info is not None and info["ring"] == 48000


@pytest.mark.parametrize(
    ("fmt", "rate", "channels"),
    [
        (Format.U8, Rate.R48000, 2),
        (Format.S24, Rate.R96000, 2),
        (Format.S32, Rate.R48000, 6),
        (Format.FLOAT, Rate.R44100, 1),
    ],
    ids=["U8", "S24-96k", "S32-6ch", "FLOAT-44k-mono"],
)
def test_playback_formats(
    pipewire: PipeWireSession, backend: PipeWireBackend, fmt: Format, rate: Rate, channels: int
) -> None:
    """Each sample format, rate and layout reaches the sink as the same tone, and a dry
    ring pads with the format's own silence (U8's is 0x80)."""
    setup = make_setup(PcmRing(1 << 20, Switch(True)), fmt=fmt, rate=rate, channels=channels)
    ring = setup.ring
    ring.write(tone(FREQ, 0.3, ring_format(setup)))
    backend.prepare(setup)
    with pipewire.recording(REC) as rec:
        play_out(backend, ring, tail=0.3)
    report = analyse(channel(rec.data, REC), FREQ, REC.rate)
    assert 0.22 <= report.active_seconds <= 0.38, report
    assert report.purity > 0.9, report


@pytest.mark.parametrize("how", ["switch off", "inactive"])
def test_disabled_output_plays_silence(
    pipewire: PipeWireSession, backend: PipeWireBackend, how: str
) -> None:
    """'switch off': the backend is (wrongly) told the output is active, but the ring's
    gate still refuses every period. 'inactive': the PipeWire stream is deactivated."""
    ring = PcmRing(REC.bytes_for(1), Switch(how == "inactive"))
    setup = make_setup(ring)
    queued = ring.write(tone(FREQ, 0.5, ring_format(setup)))
    backend.prepare(setup)
    with pipewire.recording(REC) as rec:
        backend.start(0)
        backend.set_active(OUTPUT, how == "switch off")
        time.sleep(0.6)
    report = analyse(channel(rec.data, REC), FREQ, REC.rate)
    assert report.peak < SILENT, report
    assert ring.fill == queued  # nothing was taken from the guest's samples
    info = backend.stream_info(0)
    assert info is not None and info["ring"] == 0
    if how == "switch off":
        assert info["active"] and info["silent"] > 0  # it ran, and played silence
    else:
        assert not info["active"] and info["cycles"] == 0


def test_dry_ring_plays_silence_not_old_data(
    pipewire: PipeWireSession, backend: PipeWireBackend
) -> None:
    """0.25 s of tone, then nothing: the sink must hear 0.25 s of tone and then
    silence, never the last buffer again (upstream's choppy-audio bug)."""
    ring = PcmRing(REC.bytes_for(1), Switch(True))
    setup = make_setup(ring, period_frames=256)
    ring.write(tone(FREQ, 0.25, ring_format(setup)))
    backend.prepare(setup)
    with pipewire.recording(REC) as rec:
        play_out(backend, ring, tail=0.7)
    samples = channel(rec.data, REC)
    report = analyse(samples, FREQ, REC.rate)
    assert 0.2 <= report.active_seconds <= 0.3, report
    assert report.purity > 0.9, report
    last_loud = max(i for i, v in enumerate(samples) if abs(v) > SILENT)
    assert max(abs(v) for v in samples[last_loud + 1 :]) == 0.0
    assert len(samples) - last_loud > 0.5 * REC.rate  # a long tail of exact zeros
    info = backend.stream_info(0)
    assert info is not None and info["ring"] == 12000 and info["silent"] > 0.4 * 48000


def test_volume_and_mute(pipewire: PipeWireSession, backend: PipeWireBackend) -> None:
    """Mute set before PREPARE holds from the first period; then a gain of 0.5 halves
    the amplitude. Both land in the node's Props (channelVolumes, mute)."""
    ring = PcmRing(REC.bytes_for(2), Switch(True))
    setup = make_setup(ring)
    fmt = ring_format(setup)
    backend.set_volume(OUTPUT, 1.0, True)
    backend.prepare(setup)
    ring.write(tone(FREQ, 0.5, fmt))
    with pipewire.recording(REC) as rec:
        play_out(backend, ring)
    assert analyse(channel(rec.data, REC), FREQ, REC.rate).peak < SILENT
    (node,) = pipewire.nodes(node_name(OUTPUT))
    assert node_param(node, "Props", "mute") is True

    backend.set_volume(OUTPUT, 0.5, False)
    ring.write(tone(FREQ, 0.5, fmt))
    with pipewire.recording(REC) as rec:
        wait_for(lambda: ring.fill == 0)
        time.sleep(0.15)
    report = analyse(channel(rec.data, REC), FREQ, REC.rate)
    assert 0.2 < report.peak < 0.3, report  # the tone's 0.5 at half gain
    (node,) = pipewire.nodes(node_name(OUTPUT))
    assert node_param(node, "Props", "channelVolumes") == pytest.approx([0.5, 0.5])
    assert node_param(node, "Props", "mute") is False


# -- capture ------------------------------------------------------------------------------


def test_capture_tone_enters_the_ring_only_while_enabled(
    pipewire: PipeWireSession, backend: PipeWireBackend
) -> None:
    switch = Switch(True)
    fmt = PcmFormat("f32", 48000, 1)
    ring = PcmRing(fmt.bytes_for(2), switch)
    backend.prepare(make_setup(ring, direction=INPUT, fmt=Format.FLOAT, channels=1))
    backend.start(1)
    backend.set_active(INPUT, True)
    wait_for(lambda: ring.write_pos > 0, what="the capture stream to run")
    ring.clear()

    source_fmt = PcmFormat("s16", 48000, 2)
    pipewire.play(tone(FREQ, 0.5, source_fmt), source_fmt)
    time.sleep(0.1)
    captured = bytearray(ring.fill)
    ring.read_into(captured)
    report = analyse(channel(bytes(captured), fmt), FREQ, fmt.rate)
    assert report.active_seconds >= 0.4, report
    assert report.purity > 0.95, report
    assert 0.4 < report.peak < 0.6, report

    # The switch goes off and the backend has not been told yet: the gate alone keeps
    # the microphone out of the ring.
    switch.enabled = False
    before = backend.stream_info(1)
    assert before is not None
    written = ring.write_pos
    pipewire.play(tone(FREQ, 0.3, source_fmt), source_fmt)
    time.sleep(0.1)
    assert ring.write_pos == written
    after = backend.stream_info(1)
    assert after is not None and after["dropped"] > before["dropped"]

    backend.set_active(INPUT, False)
    after = backend.stream_info(1)
    assert after is not None and not after["active"]


# -- stream lifecycle ---------------------------------------------------------------------


def test_prepare_twice_leaves_one_node(pipewire: PipeWireSession, backend: PipeWireBackend) -> None:
    """Upstream #490: repeated SET_PARAMS/PREPARE left a PipeWire stream behind each time."""
    ring = PcmRing(65536, Switch(True))
    backend.prepare(make_setup(ring))
    backend.prepare(make_setup(ring, rate=Rate.R44100, period_frames=441))
    name = node_name(OUTPUT)
    wait_for(lambda: len(pipewire.nodes(name)) == 1, what="exactly one output node")
    (node,) = pipewire.nodes(name)
    props = node_props(node)
    info = backend.stream_info(0)
    assert info is not None and node["id"] == info["node_id"]
    assert props["media.type"] == "Audio" and props["media.category"] == "Playback"
    assert props["media.class"] == "Stream/Output/Audio"
    # Playback asks for the power-of-two quantum nearest 20 ms (PipeWire rounds a
    # request down to one), which a 40 ms guest buffer of 10 ms periods has room for.
    assert props["node.latency"] == "1024/44100"

    backend.prepare(make_setup(PcmRing(65536, Switch(False)), direction=INPUT))
    (node,) = pipewire.nodes(node_name(INPUT))
    assert node_props(node)["media.category"] == "Capture"

    backend.release(0)
    wait_for(lambda: not pipewire.nodes(name), what="the output node to go")
    assert len(pipewire.nodes(node_name(INPUT))) == 1
    backend.close()
    wait_for(lambda: not pipewire.nodes(node_name(INPUT)), what="the input node to go")
    backend.close()


def test_daemon_gone_fails_start_and_prepare_reconnects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private PipeWire that dies under a running stream: nothing hangs or crashes,
    START reports it (the guest's buffers would never be consumed), and the next
    PREPARE connects again once a daemon is back."""
    session = PipeWireSession(tmp_path)
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in session.client_env.items():
        monkeypatch.setenv(name, value)
    backend = PipeWireBackend()
    ring = PcmRing(65536, Switch(True))
    try:
        session.start()
        backend.prepare(make_setup(ring))
        backend.start(0)
        session.stop()
        backend.stop(0)
        backend.set_volume(OUTPUT, 0.5, False)
        backend.set_active(OUTPUT, True)
        with pytest.raises(BackendError, match="stream is gone"):
            backend.start(0)
        with pytest.raises(BackendError, match="no PipeWire daemon is listening"):
            backend.prepare(make_setup(ring))
        session.start()
        backend.prepare(make_setup(ring))
        backend.start(0)

        def running() -> bool:
            info = backend.stream_info(0)
            return info is not None and info["cycles"] > 0

        wait_for(running, what="the stream to run again")
    finally:
        backend.close()
        session.stop()


def test_active_only_while_started_and_enabled(backend: PipeWireBackend) -> None:
    backend.prepare(make_setup(PcmRing(65536, Switch(True))))

    def active() -> bool:
        info = backend.stream_info(0)
        assert info is not None
        return info["active"]

    assert not active()  # prepared streams are inactive
    backend.start(0)
    assert active()  # the switch is on
    backend.set_active(OUTPUT, False)
    assert not active()
    backend.set_active(INPUT, True)
    assert not active()  # the other direction's switch
    backend.set_active(OUTPUT, True)
    assert active()
    backend.stop(0)
    assert not active()
    backend.set_active(OUTPUT, True)
    assert not active()  # enabled but stopped
    backend.start(0)
    assert active()
    backend.release(0)
    assert backend.stream_info(0) is None
