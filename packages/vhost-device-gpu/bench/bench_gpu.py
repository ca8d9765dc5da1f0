"""Benchmark of vhost-device-gpu's 2D path (run by hand).

Plays the guest's virtio-gpu driver through the core's Python frontend and QEMU's side
of the display socket (vhost_device_gpu.testing.FakeQemuDisplay, not composing), and
prints frames/s of TRANSFER_TO_HOST_2D + RESOURCE_FLUSH, each frame waited for as a
guest waits for its flush, at full screen (1280x800, 1920x1080) and for 64x64 damage;
a run ends once the display has received every frame's pixels. Then the daemon's CPU
per frame and its peak RSS. `--daemon LABEL='COMMAND {sock}'` (repeatable) runs other
daemons with the same frontend, e.g. QEMU's C backend:

    .venv/bin/python packages/vhost-device-gpu/bench/bench_gpu.py \\
        --daemon qemu='/usr/lib/qemu/vhost-user-gpu --socket-path {sock}'
"""

from __future__ import annotations

import argparse
import shlex
import struct
import sys
import time

from vhost_device_gpu.testing import FakeQemuDisplay, bench_daemon
from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import reap_used
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

OURS = (
    f"{shlex.quote(sys.executable)} -m vhost_device_gpu.main -s {{sock}} -g 2d --log-level warning"
)
SIZES = ((1280, 800), (1920, 1080))
DAMAGE = 64


def hdr(kind: int) -> bytes:
    return struct.pack("<IIQIB3x", kind, 0, 0, 0, 0)


class Guest:
    """Command buffers in the frontend's memory, reused frame after frame."""

    def __init__(self, frontend: Frontend, control: FrontendQueue) -> None:
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.control = control
        self.answers = [self.ram.alloc(64) for _ in range(2)]

    def command(self, payload: bytes) -> int:
        gpa = self.ram.alloc(len(payload))
        self.ram.memory.write(gpa, payload)
        return gpa

    def run(self, commands: list[tuple[int, int]]) -> None:
        for (gpa, size), answer in zip(commands, self.answers, strict=False):
            self.control.driver.add([(gpa, size, False), (answer, 64, True)])
        self.control.publish()
        reap_used(self.control, len(commands))

    def ok(self, payload: bytes) -> None:
        self.run([(self.command(payload), len(payload))])
        (kind,) = struct.unpack("<I", self.ram.memory.read(self.answers[0], 4))
        if kind != 0x1100:
            raise RuntimeError(f"command {payload[:4].hex()} answered {kind:#x}")


def frames(
    guest: Guest, display: FakeQemuDisplay, rid: int, w: int, h: int, part: int, seconds: float
) -> tuple[int, float]:
    """Frames of `part` x `part` (or the whole screen if part == 0) until `seconds`."""
    stride = w * 4
    pw, ph = (part, part) if part else (w, h)
    spots = [
        (x, y) for y in range(0, h - ph + 1, max(ph, 1)) for x in range(0, w - pw + 1, max(pw, 1))
    ]
    cmds = []
    for x, y in spots[:256]:
        rect = struct.pack("<IIII", x, y, pw, ph)
        t = guest.command(hdr(0x105) + rect + struct.pack("<QI4x", y * stride + x * 4, rid))
        f = guest.command(hdr(0x104) + rect + struct.pack("<I4x", rid))
        cmds.append([(t, 56), (f, 48)])
    before = display.update_bytes
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        guest.run(cmds[count % len(cmds)])
        count += 1
    display.wait_update_bytes(before + count * pw * ph * 4, timeout=60)
    return count, time.perf_counter() - t0


def bench(label: str, command: str, seconds: float) -> list[str]:
    rows = []
    with bench_daemon(command, start_timeout=10) as daemon:
        guest = Guest(daemon.frontend, daemon.control)
        for rid, (w, h) in enumerate(SIZES, 1):
            backing = guest.ram.alloc(w * h * 4, align=4096)
            guest.ram.memory.write(backing, bytes(range(256)) * (w * h * 4 // 256))
            guest.ok(hdr(0x101) + struct.pack("<IIII", rid, 2, w, h))
            guest.ok(
                hdr(0x106) + struct.pack("<II", rid, 1) + struct.pack("<QI4x", backing, w * h * 4)
            )
            guest.ok(hdr(0x103) + struct.pack("<IIII", 0, 0, w, h) + struct.pack("<II", 0, rid))
            for part in (0, DAMAGE):
                cpu0 = cpu_seconds(daemon.process.pid)
                n, elapsed = frames(guest, daemon.display, rid, w, h, part, seconds)
                cpu = cpu_seconds(daemon.process.pid) - cpu0
                what = f"{w}x{h} full" if not part else f"{part}x{part} damage on {w}x{h}"
                rows.append(f"| {label} | {what} | {n / elapsed:.0f} | {cpu / n * 1e3:.3f} |")
        rows.append(f"| {label} | peak RSS | {peak_rss_kib(daemon.process.pid) / 1024:.1f} MiB | |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument(
        "--daemon",
        action="append",
        default=[],
        metavar="LABEL='COMMAND {sock}'",
        help="another daemon to measure with the same frontend (repeatable)",
    )
    args = parser.parse_args()
    daemons = [("ours", OURS)] + [tuple(d.split("=", 1)) for d in args.daemon]  # type: ignore[misc]
    print("| daemon | frames | frames/s | daemon CPU ms/frame |")
    print("|---|---|---|---|")
    for label, command in daemons:
        for row in bench(label, command, args.seconds):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
