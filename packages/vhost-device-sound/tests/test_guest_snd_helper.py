"""The guest's snd-test program (guest/snd_test.c), proven against QEMU's own in-process
virtio-sound device before it is trusted to judge our daemon through vhost-user-snd-pci.

QEMU's device needs no vhost-user daemon: ``-audiodev none`` (a clock-driven sink, and
a source of silence) or ``-audiodev wav`` (which records what the guest played). What it
taught us, which the daemon's guest tests inherit:

- It offers s8/u8/s16/u16/s32/u32/float, 1-2 channels and every virtio rate (5512 to
  384000); the guest driver (6.12) allows 2-16 periods of 50 bytes to 240 KiB. The
  defaults (48 kHz s16 stereo, 4 periods of 1024 frames) sit well inside.
- With its mixing engine on (the default), QEMU's audio core stalls for some period
  sizes (256 and 441 frames failed at 44.1 and 48 kHz; 64, 128, 512 and 1024 played):
  no period completes for 100 ms and the guest's write fails with EIO. Not the guest's
  fault: with ``out.mixing-engine=off`` every size plays. The tests keep to 1024 frames.
- The wav backend, with the mixing engine on and ``out.frequency`` equal to the stream's
  rate, records the guest's samples bit-exact, but the last ~100 frames still in the
  mixer when the stream stops never reach the file. With the mixing engine off it keeps
  every frame but paces and labels them at 44100 Hz whatever the stream's rate (and
  ``out.frequency`` is refused then). It has no input: capture through it fails with
  EIO, as the device never completes a capture period.
- ``jacks=1`` or ``chmaps=1`` make the guest driver's probe fail (QEMU answers
  JACK_INFO and CHMAP_INFO with NOT_SUPP), and QEMU has no control elements: the mixer
  subcommands only find an empty card here.
- It completes a tx buffer once its last frame is played (pcm_status latency 0), and
  with exactly 2 s written in 23040-frame periods (alsa-lib's writei, then drain) its
  DRAIN too ends by the kernel's timeout at 2.98 s: Linux 6.12's driver sends a period
  only once it is whole, to any device (issue 24's rows as written).
"""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from pathlib import Path

import pytest
from guest_snd import (
    GUEST_PATH,
    SOURCE,
    by_cmd,
    cache_dir,
    cache_key,
    compile_snd_test,
    guest_files,
    parse_report,
    parse_reports,
    snd_test_binary,
    within,
)

from vhost_user_core.testing.qemu import Guest

NONE_AUDIODEV = ["-audiodev", "none,id=snd0", "-device", "virtio-sound-pci,audiodev=snd0"]


def qemu_wav_device(path: Path, rate: int = 48000) -> list[str]:
    """QEMU's virtio-sound recording what the guest plays into `path`, at `rate` (the
    stream's rate too, so that the mixing engine does not resample)."""
    audiodev = f"wav,id=snd0,path={path},out.frequency={rate}"
    return ["-audiodev", audiodev, "-device", "virtio-sound-pci,audiodev=snd0"]


def expected_tone(frames: int, rate: int, freq: float, channels: int) -> list[int]:
    """The s16 samples snd-test plays: half-scale sine, same on every channel, with the
    C program's arithmetic (phase kept in [0, 2 pi), rounding half away from zero)."""
    samples: list[int] = []
    phase, step = 0.0, 2.0 * math.pi * freq / rate
    for _ in range(frames):
        x = 0.5 * math.sin(phase) * 32767.0
        samples += [int(math.copysign(math.floor(abs(x) + 0.5), x))] * channels
        phase = math.fmod(phase + step, 2.0 * math.pi)
    return samples


# --------------------------------------------------------------------- host only


def test_compiles_static_and_warning_free(tmp_path: Path) -> None:
    binary = tmp_path / "snd-test"
    assert compile_snd_test(binary, werror=True) == ""
    elf = binary.read_bytes()
    assert elf[:4] == b"\x7fELF"
    # No PT_INTERP program header: a static binary, which the busybox guest can run.
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", elf, 0x20)[0],
        *struct.unpack_from("<HH", elf, 0x36),
    )
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "snd-test is dynamically linked"


def test_binary_is_cached_by_source_and_compiler() -> None:
    data = snd_test_binary()
    cached = cache_dir() / f"snd-test-{cache_key()}"
    assert cached.read_bytes() == data
    assert guest_files() == {"snd-test": data}
    assert GUEST_PATH == "/snd-test"
    assert SOURCE.name == "snd_test.c"


def run_on_host(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The static binary runs on the host too (it is the same architecture); without
    ALSA devices that exercises its argument handling and error reports."""
    binary = tmp_path / "snd-test"
    if not binary.exists():
        binary.write_bytes(snd_test_binary())
        binary.chmod(0o755)
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in ([], ["play"], ["play", "0"], ["play", "1", "--rate", "x"], ["frobnicate"]):
        done = run_on_host(tmp_path, *args)
        assert done.returncode == 2, args
        report = parse_report(done.stdout)
        assert report["error"] == "usage" and report.get("reason"), args
    assert parse_report(run_on_host(tmp_path).stdout).cmd == "none"
    done = run_on_host(tmp_path, "play", "1", "--format", "s24")
    assert parse_report(done.stdout)["reason"] == "bad option value"


def test_failures_report_step_and_errno(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-device")
    done = run_on_host(tmp_path, "play", "2", "--device", missing)
    report = parse_report(done.stdout, "play")
    assert done.returncode == 1
    assert (report["error"], report.as_int("errno")) == ("open", 2)
    assert report["strerror"] == "No such file or directory"
    # Not a PCM at all: HW_PARAMS fails, and no constraint is blamed for it.
    report = parse_report(run_on_host(tmp_path, "play", "1", "--device", "/dev/null").stdout)
    assert (report["error"], report.as_int("errno"), report.get("refused")) == (
        "hw_params",
        25,
        None,
    )
    for cmd in (["ctl-list"], ["ctl-get", "Master Playback Volume"], ["ctl-set", "X", "-5"]):
        done = run_on_host(tmp_path, *cmd, "--device", missing)
        assert done.returncode == 1
        assert parse_report(done.stdout, cmd[0])["error"] == "open"


def test_capture_reports_on_stderr_when_samples_use_stdout(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-device")
    done = run_on_host(tmp_path, "capture", "1", "--device", missing)
    assert done.stdout == ""
    assert parse_report(done.stderr, "capture")["error"] == "open"
    done = run_on_host(tmp_path, "capture", "1", "--device", missing, f"--out={tmp_path}/x")
    assert done.stderr == "" and parse_report(done.stdout, "capture")["error"] == "open"


def test_parser_skips_console_noise_and_splits_reports() -> None:
    console = "\r\n".join(
        [
            "[    3.6] virtio_snd virtio1: something",
            "stray=before-any-report",
            "cmd=ctl-list",
            "count=2",
            'numid=1 iface=MIXER name="Master Playback Volume" index=0 type=INTEGER '
            "access=rw count=2 min=0 max=100 step=1 value=80,75",
            'numid=2 iface=MIXER name="Say \\"hi\\"" index=0 type=BOOLEAN access=r count=1',
            "status=0",
            "cmd=play",
            'broken "quote',
            "frames=96256",
            "elapsed=2.004",
        ]
    )
    ctl, play = parse_reports(console)
    assert (ctl.cmd, ctl.as_int("count"), ctl["status"]) == ("ctl-list", 2, "0")
    assert ctl.values("Master Playback Volume") == [80, 75]
    assert ctl.element('Say "hi"') == {
        "numid": "2",
        "iface": "MIXER",
        "name": 'Say "hi"',
        "index": "0",
        "type": "BOOLEAN",
        "access": "r",
        "count": "1",
    }
    assert ctl.element("Nope") is None
    assert play.ok and play.as_int("frames") == 96256 and play.as_float("elapsed") == 2.004
    assert "stray" not in ctl.fields
    with pytest.raises(ValueError):
        parse_report(console)
    assert parse_report(console, "play") == play


# ------------------------------------------------------------------------ guest

PROBE_AND_PLAY = f"""
echo "cards=$(grep -c virtio-snd /proc/asound/cards)"
ls /dev/snd
T={GUEST_PATH}
$T pcm-info; echo "status=$?"
$T pcm-info --capture; echo "status=$?"
$T ctl-list; echo "status=$?"
$T ctl-get "Master Playback Volume"; echo "status=$?"
$T play 2; echo "status=$?"
$T capture 1 > "$OUTPORT"; echo "status=$?"
$T play 0.5 --channels 3; echo "status=$?"
$T play 1 --stall 400; echo "status=$?"
for f in u8 s32 float; do $T play 0.25 --format $f --channels 1 --rate 44100; done
$T play 0.3 --rate 8000 --period-frames 80 --periods 16; echo "status=$?"
$T play --frames 96000 --period-frames 23040 --periods 2 --partial; echo "status=$?"
"""


@pytest.mark.guest
def test_snd_test_drives_qemu_virtio_sound(guest: Guest) -> None:
    result = guest.run(PROBE_AND_PLAY, devices=NONE_AUDIODEV, extra_files=guest_files())
    assert result.rc == 0, result.console_output
    out = result.script_output
    # The driver bound, and devtmpfs made the ALSA nodes the program opens.
    assert "cards=1" in out.splitlines(), out
    for node in ("controlC0", "pcmC0D0p", "pcmC0D0c"):
        assert node in out.split(), out
    reports = parse_reports(out)

    for info in by_cmd(reports, "pcm-info"):
        assert info.ok and info["status"] == "0", info
        assert {"s16", "u8", "s32", "float"} <= set(info.as_list("formats"))
        assert {"8000", "44100", "48000"} <= set(info.as_list("rates"))
        assert info.as_range("channels") == (1, 2)
        assert info.as_range("periods") == (2, 16)

    # QEMU's device has no control elements; the lookup fails cleanly.
    (ctl_list,) = by_cmd(reports, "ctl-list")
    assert ctl_list.ok and ctl_list.as_int("count") == 0 and ctl_list.records == []
    (ctl_get,) = by_cmd(reports, "ctl-get")
    assert (ctl_get["error"], ctl_get.as_int("errno"), ctl_get["status"]) == ("find", 2, "1")

    play, refused, stalled, *formats, low_rate, partial = by_cmd(reports, "play")
    assert play.ok and play["status"] == "0", play
    # Its pcm_status latency is 0: it completes a buffer once all of it is played.
    assert play.as_int("extra_delay") == 0, play
    assert (play.as_int("rate"), play.as_int("channels"), play["format"]) == (48000, 2, "s16")
    assert play.as_int("xruns") == 0
    # Rounded up to whole periods: 94 periods of 1024 frames.
    assert play.as_int("frames") == 96256 and play.as_float("expected") == 2.005
    assert within(play.as_float("elapsed"), 2.0), play

    (capture,) = by_cmd(reports, "capture")
    assert capture.ok and capture["status"] == "0", capture
    assert capture.as_int("frames") == 48000 and capture.as_int("xruns") == 0
    assert within(capture.as_float("elapsed"), 1.0), capture
    assert len(result.output_bytes) == capture.as_int("bytes") == 48000 * 4
    # QEMU's none audiodev records silence; the statistics agree with the data.
    samples = struct.unpack(f"<{48000 * 2}h", result.output_bytes)
    assert capture.as_int("samples") == len(samples)
    assert capture.as_int("nonzero") == sum(1 for s in samples if s) == 0
    assert capture.as_float("peak") == max(abs(s) for s in samples) == 0

    # A refusal is reported with the errno and the constraint that failed.
    assert refused["status"] == "1" and refused["error"] == "hw_params"
    assert refused.as_int("errno") == 22 and refused["strerror"] == "Invalid argument"
    assert (refused["refused"], refused.as_range("allowed")) == ("channels", (1, 2))

    # A 400 ms pause halfway through starves the 85 ms buffer: one underrun,
    # recovered by PREPARE, and the rest of the tone still plays.
    assert stalled.ok and stalled.as_int("xruns") == 1, stalled
    assert stalled.as_float("elapsed") > stalled.as_float("expected") + 0.25

    assert [(r["format"], r.ok, r.as_int("xruns")) for r in formats] == [
        ("u8", True, 0),
        ("s32", True, 0),
        ("float", True, 0),
    ], formats
    for r in formats:
        assert within(r.as_float("elapsed"), r.as_float("expected"), 0.2), r
    assert low_rate.ok and low_rate["status"] == "0", low_rate
    assert low_rate.as_int("buffer_frames") == 1280
    assert within(low_rate.as_float("elapsed"), low_rate.as_float("expected"), 0.2), low_rate

    # Issue 24's first row as alsa-lib plays it: exactly 2 s, the last period partial.
    # The driver never sends QEMU's device that period either, so DRAIN ends only by
    # the kernel's timeout, 1.1 buffer times after the last whole period came back.
    assert (partial.get("error"), partial.get("errno")) == ("drain", "5"), partial
    assert abs(partial.as_float("elapsed") - (4 * 23040 + 1.1 * 46080) / 48000) < 0.15, partial


@pytest.mark.guest
def test_qemu_wav_audiodev_records_the_guests_tone(guest: Guest, tmp_path: Path) -> None:
    wav_path = tmp_path / "played.wav"
    script = f"{GUEST_PATH} play 1 --freq 1000; echo status=$?"
    result = guest.run(script, devices=qemu_wav_device(wav_path), extra_files=guest_files())
    assert result.rc == 0, result.console_output
    play = parse_report(result.script_output, "play")
    assert play.ok and play["status"] == "0" and play.as_int("xruns") == 0, play
    assert within(play.as_float("elapsed"), play.as_float("expected")), play

    with wave.open(str(wav_path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 48000)
        frames = wav.getnframes()
        data = wav.readframes(frames)
    # The frames the guest wrote reached the device in order and unchanged, except for
    # a tail shorter than a period that QEMU's mixer drops when the stream stops.
    assert play.as_int("frames") == 48128
    assert play.as_int("frames") - play.as_int("period_frames") < frames <= 48128
    got = struct.unpack(f"<{frames * 2}h", data)
    want = expected_tone(frames, 48000, 1000.0, 2)
    mismatches = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if abs(g - w) > 1]
    assert not mismatches, f"{len(mismatches)} samples differ, first at {mismatches[0]}"
