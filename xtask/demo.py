"""`xtask demo`: the real daemon serving a real QEMU guest, end to end, for a person to watch.

Runs with the venv's python (`python -m xtask.demo rng`, started by `python3 xtask demo`),
since it drives QEMU through vhost_user_core.testing. Adding a device is one DEMOS entry:
the daemon's flags, the QEMU device, and a guest shell script that uses the Linux driver.
"""

from __future__ import annotations

import argparse
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
from xtask.workspace import VENV

SOCKET_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Demo:
    """What one device needs for the demo; the running and checking is shared."""

    #: QEMU -device driver, e.g. vhost-user-rng-pci.
    qemu_device: str
    #: Shell script (busybox) run in the guest; its output is the demo.
    script: str
    #: Extra daemon flags besides --socket-path.
    flags: list[str] = field(default_factory=list)


RNG_SCRIPT = """\
# Keep the kernel's own hwrng thread from racing our reads.
echo 0 > /sys/class/misc/hw_random/rng_quality 2>/dev/null || true
echo "rng_current: $(cat /sys/class/misc/hw_random/rng_current)"
head -c 65536 /dev/hwrng > /tmp/rng.bin
echo "first 64 bytes from /dev/hwrng:"
head -c 64 /tmp/rng.bin | hexdump -C
echo "read: $(wc -c < /tmp/rng.bin) bytes, gzip -9: $(gzip -9 -c /tmp/rng.bin | wc -c) bytes"
"""

DEMOS: dict[str, Demo] = {
    "rng": Demo(qemu_device="vhost-user-rng-pci", script=RNG_SCRIPT),
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
        socket = Path(f"{base}0")  # upstream naming: <path>0 .. <path><count-1>
        say(f"starting {daemon_bin.name} --socket-path {base}")
        daemon = subprocess.Popen([str(daemon_bin), "--socket-path", str(base), *demo.flags])
        try:
            _wait_for(socket, daemon)
            say(f"booting a QEMU guest with {demo.qemu_device} on {socket}")
            devices = vhost_user_device(socket, demo.qemu_device)
            result = Guest(build_image()).run(demo.script, devices=devices)
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
