"""vhost-device-sound serving a real Linux guest (virtio_snd, kernel 6.12) through QEMU's
vhost-user-snd-pci, under TCG. The guest plays and records with snd-test (raw ALSA
ioctls), so what is checked is what the kernel driver saw of our device."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from guest_snd import GUEST_PATH, by_cmd, guest_files, parse_reports, within
from pipewire_harness import PcmFormat, PipeWireSession, analyse, channel, tone
from sound_daemon import running_daemon

from vhost_user_core.testing.qemu import Guest

pytestmark = pytest.mark.guest


NULL_SCRIPT = f"""
T={GUEST_PATH}
cat /proc/asound/cards
$T pcm-info; echo status=$?
$T pcm-info --capture; echo status=$?
$T ctl-list; echo status=$?
$T ctl-set "Master Playback Volume" 40; echo status=$?
$T ctl-set "Master Playback Switch" off; echo status=$?
$T play 2; echo status=$?
$T capture 1 > "$OUTPORT"; echo status=$?
$T play 1 --stall 400; echo status=$?
$T play 1 --period-frames 480 --periods 4; echo status=$?
$T play 1 --period-frames 480 --periods 2; echo status=$?
echo TOGGLE-OUTPUT-SOON
$T play 2; echo status=$?
"""


def test_null_backend_in_a_guest(guest: Guest, tmp_path: Path) -> None:
    """Probe, controls, 2 s of playback in real time, 1 s of (disabled) capture, an
    underrun recovered, and the output switched off and on mid-playback."""
    with running_daemon(tmp_path, "--controls", control=True) as daemon:
        toggles: list[str] = []

        def toggle() -> None:
            def flip(state: str) -> None:
                toggles.append(daemon.ask(f"SET output {state}"))

            threading.Timer(0.6, flip, ("off",)).start()
            threading.Timer(1.3, flip, ("on",)).start()

        result = guest.run(
            NULL_SCRIPT,
            devices=daemon.devices(controls=True),
            extra_files=guest_files(),
            on_console={"TOGGLE-OUTPUT-SOON": toggle},
        )
        assert daemon.ask("QUERY") == "output on input off"
    assert result.rc == 0, result.console_output
    out = result.script_output
    assert "VirtIO SoundCard" in out, out
    reports = parse_reports(out)

    playback_info, capture_info = by_cmd(reports, "pcm-info")
    for info in (playback_info, capture_info):
        assert info["status"] == "0", info
        assert {"u8", "s16", "s32"} <= set(info.as_list("formats"))
        assert {"8000", "11025", "16000", "22050", "32000", "44100", "48000"} <= set(
            info.as_list("rates")
        )
        assert info.as_range("channels") == (1, 8)  # the null backend: no host limits

    (ctl_list,) = by_cmd(reports, "ctl-list")
    mixer = {r["name"] for r in ctl_list.records if r["iface"] == "MIXER"}
    assert mixer == {"Master Playback Volume", "Master Playback Switch"}, ctl_list
    volume_set, switch_set = by_cmd(reports, "ctl-set")
    assert volume_set["status"] == "0" and volume_set.values("Master Playback Volume") == [40]
    assert switch_set["status"] == "0" and switch_set.values("Master Playback Switch") == [0]

    # 10 ms periods: the pacing timer plays two per wake-up in a 4-period buffer, one
    # in a 2-period buffer; either way the guest sees real time and no xrun.
    played, stalled, short4, short2, toggled = by_cmd(reports, "play")
    for play in (played, short4, short2, toggled):
        assert play["status"] == "0" and play.as_int("xruns") == 0, play
        assert within(play.as_float("elapsed"), play.as_float("expected")), play
    assert toggles == ["OK", "OK"]  # the switch flipped twice while the guest played

    # Underrun: the driver stops, releases (we return every buffer), prepares, restarts.
    assert stalled["status"] == "0" and stalled.as_int("xruns") == 1, stalled

    (capture,) = by_cmd(reports, "capture")
    assert capture["status"] == "0" and capture.as_int("xruns") == 0, capture
    assert capture.as_int("frames") == 48000
    assert within(capture.as_float("elapsed"), 1.0), capture
    assert capture.as_int("nonzero") == 0  # input disabled: silence
    assert result.output_bytes == bytes(48000 * 4)


def test_guest_reconnects_to_the_same_daemon(guest: Guest, tmp_path: Path) -> None:
    """A second QEMU (a guest rebooted elsewhere) gets a fresh device from the daemon."""
    script = f"{GUEST_PATH} play 0.5; echo status=$?"
    with running_daemon(tmp_path) as daemon:
        for _ in range(2):
            result = guest.run(script, devices=daemon.devices(), extra_files=guest_files())
            assert result.rc == 0, result.console_output
            (play,) = by_cmd(parse_reports(result.script_output), "play")
            assert play["status"] == "0" and play.as_int("xruns") == 0, play


PIPEWIRE_SCRIPT = f"""
T={GUEST_PATH}
$T play 2 --freq 1000; echo status=$?
echo MIC-TONE-STARTS
sleep 0.4
$T capture 1 --out /dev/null; echo status=$?
echo MIC-OFF
sleep 0.5
$T capture 1 --out /dev/null; echo status=$?
echo OUTPUT-OFF-SOON
$T play 2 --freq 1000; echo status=$?
"""


def test_pipewire_backend_in_a_guest(
    guest: Guest, tmp_path: Path, pipewire_session: PipeWireSession
) -> None:
    """Through PipeWire: the guest's tone reaches the sink; the microphone's signal
    reaches the guest while input is on and silence does after SET input off (the host
    keeps playing into it); SET output off mid-playback keeps the guest in real time
    and turns what PipeWire receives into silence."""
    session = pipewire_session
    monitor = PcmFormat("f32", 48000, 2)
    mic = PcmFormat("s16", 48000, 2)
    flags = ("--backend", "pipewire", "--initial-streams", "output,input")
    with running_daemon(tmp_path, *flags, control=True, env=session.env) as daemon:
        answers: list[str] = []

        def later(delay: float, action: object) -> None:
            threading.Timer(delay, action).start()  # type: ignore[arg-type]

        actions = {
            "MIC-TONE-STARTS": lambda: later(0, lambda: session.play(tone(500, 3.5, mic), mic)),
            "MIC-OFF": lambda: answers.append(daemon.ask("SET input off")),
            "OUTPUT-OFF-SOON": lambda: later(
                0.8, lambda: answers.append(daemon.ask("SET output off"))
            ),
        }
        with session.recording(monitor) as recording:
            result = guest.run(
                PIPEWIRE_SCRIPT,
                devices=daemon.devices(),
                extra_files=guest_files(),
                on_console=actions,
            )
        assert daemon.ask("QUERY") == "output off input off"
    assert result.rc == 0, result.console_output
    assert answers == ["OK", "OK"]
    reports = parse_reports(result.script_output)

    first, toggled = by_cmd(reports, "play")
    for play in (first, toggled):
        assert play["status"] == "0" and play.as_int("xruns") == 0, play
        assert within(play.as_float("elapsed"), play.as_float("expected")), play

    heard, muted = by_cmd(reports, "capture")
    for capture in (heard, muted):
        assert capture["status"] == "0" and capture.as_int("xruns") == 0, capture
        assert within(capture.as_float("elapsed"), 1.0), capture
    # 500 Hz crosses zero about 1000 times a second; the tone is half scale.
    assert heard.as_float("peak") > 8000, heard
    assert 800 <= heard.as_int("crossings") <= 1200, heard
    assert muted.as_int("nonzero") == 0, muted

    # The sink heard the 1 kHz tone: all of the first 2 s, then only until the output
    # was switched off about 0.8 s into the second playback (not its last 1.2 s).
    report = analyse(channel(recording.data, monitor), 1000, monitor.rate)
    assert report.purity > 0.9, report
    assert 2.5 <= report.active_seconds <= 3.3, report
