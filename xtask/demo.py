"""`xtask demo`: the real daemon serving a real QEMU guest, end to end, for a person to watch.

Runs with the venv's python (`python -m xtask.demo rng`, started by `python3 xtask demo`),
since it drives QEMU through vhost_user_core.testing. Adding a device is one DEMOS entry:
the daemon's flags, the QEMU device, and a guest shell script that uses the Linux driver.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vhost_user_core.testing.guest_image import build_image
from vhost_user_core.testing.qemu import Guest, vhost_user_device
from xtask.workspace import ROOT, VENV

SOCKET_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Demo:
    """What one device needs for the demo; the running and checking is shared."""

    #: QEMU -device driver, e.g. vhost-user-rng-pci.
    qemu_device: str
    #: Shell script (busybox) run in the guest; its output is the demo.
    script: str
    #: Extra daemon flags besides the socket's.
    flags: list[str] = field(default_factory=list)
    #: The daemon's socket flag, and what it appends to the path (upstream's naming:
    #: multi-socket devices listen on <path>0 .. <path><count-1>; sound on <path>).
    socket_flag: str = "--socket-path"
    socket_suffix: str = "0"
    #: Programs the guest script runs, put at the root of its initramfs.
    files: Callable[[], dict[str, bytes]] = dict


RNG_SCRIPT = """\
# Keep the kernel's own hwrng thread from racing our reads.
echo 0 > /sys/class/misc/hw_random/rng_quality 2>/dev/null || true
echo "rng_current: $(cat /sys/class/misc/hw_random/rng_current)"
head -c 65536 /dev/hwrng > /tmp/rng.bin
echo "first 64 bytes from /dev/hwrng:"
head -c 64 /tmp/rng.bin | hexdump -C
echo "read: $(wc -c < /tmp/rng.bin) bytes, gzip -9: $(gzip -9 -c /tmp/rng.bin | wc -c) bytes"
"""

SOUND_SCRIPT = """\
cat /proc/asound/cards
echo "--- 2 s of a 440 Hz tone, played through vhost-device-sound (null backend):"
/snd-test play 2
echo "--- 1 s of capture (the input is off by default: silence, in real time):"
/snd-test capture 1 --out /dev/null
"""


def _sound_files() -> dict[str, bytes]:
    """The guest's ALSA test program, built by the sound package's test helper."""
    helper = ROOT / "packages/vhost-device-sound/tests/guest_snd.py"
    spec = importlib.util.spec_from_file_location("guest_snd", helper)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    files: dict[str, bytes] = module.guest_files()
    return files


DEMOS: dict[str, Demo] = {
    "rng": Demo(qemu_device="vhost-user-rng-pci", script=RNG_SCRIPT),
    "sound": Demo(
        qemu_device="vhost-user-snd-pci",
        script=SOUND_SCRIPT,
        socket_flag="--socket",
        socket_suffix="",
        files=_sound_files,
    ),
}


def _wait_for(path: Path, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while not path.exists():
        if daemon.poll() is not None:
            raise SystemExit(f"demo: the daemon exited with status {daemon.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {path} did not appear within {SOCKET_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _stop(daemon: subprocess.Popen[bytes], socket: Path) -> list[str]:
    """SIGTERM, then the checks a service manager relies on: status 0, socket removed."""
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        return [f"the daemon ignored SIGTERM for {STOP_TIMEOUT:.0f} s"]
    problems = [] if rc == 0 else [f"the daemon exited with status {rc} after SIGTERM"]
    if socket.exists():
        problems.append(f"the daemon left {socket} behind")
    return problems


def run_demo(name: str, demo: Demo, say: Callable[[str], None]) -> int:
    daemon_bin = VENV / "bin" / f"vhost-device-{name}"
    with tempfile.TemporaryDirectory(prefix=f"xtask-demo-{name}-") as tmp:
        base = Path(tmp) / f"{name}.sock"
        socket = Path(f"{base}{demo.socket_suffix}")
        say(f"starting {daemon_bin.name} {demo.socket_flag} {base}")
        daemon = subprocess.Popen([str(daemon_bin), demo.socket_flag, str(base), *demo.flags])
        try:
            _wait_for(socket, daemon)
            say(f"booting a QEMU guest with {demo.qemu_device} on {socket}")
            devices = vhost_user_device(socket, demo.qemu_device)
            result = Guest(build_image()).run(
                demo.script, devices=devices, extra_files=demo.files()
            )
            console = result.console_output.replace("\r", "")
            print(console, end="" if console.endswith("\n") else "\n", flush=True)
            problems = [] if result.rc == 0 else [f"the guest script exited with {result.rc}"]
        finally:
            problems_at_stop = (
                _stop(daemon, socket)
                if daemon.poll() is None
                else [f"the daemon died during the demo (status {daemon.returncode})"]
            )
        problems += problems_at_stop
    for problem in problems:
        say(f"FAILED: {problem}")
    if not problems:
        say("daemon stopped cleanly on SIGTERM (status 0, socket removed)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xtask.demo")
    parser.add_argument("device", choices=sorted(DEMOS))
    name = parser.parse_args(argv).device
    return run_demo(name, DEMOS[name], lambda m: print(f"xtask: {m}", file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
