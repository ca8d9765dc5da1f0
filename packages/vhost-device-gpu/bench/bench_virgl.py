"""Benchmark of vhost-device-gpu's virgl path (run by hand).

Plays the guest's virtio-gpu driver through the core's Python frontend and QEMU's side
of the display socket (FakeQemuDisplay, not composing) against `-g virglrenderer`, and
prints: SUBMIT_3D + fence round trips/s (a 10-dword stream clearing the 1280x800
target, each answer waited for, as a guest waits on its fence); TRANSFER_FROM_HOST_3D
MB/s of a 1280x800 BGRX texture into guest memory; frames/s of a full-screen clear and
scanout at 1280x800 (a fenced SUBMIT_3D clear, then RESOURCE_FLUSH, the pixels read
back and sent to the display: a run ends once the display has every frame); the
daemon's CPU per unit; its CPU while idle.

    .venv/bin/python packages/vhost-device-gpu/bench/bench_virgl.py

There is no side-by-side run: QEMU's C backend (`vhost-user-gpu --virgl`) initialises
virglrenderer with EGL and no surfaceless flag, which needs a render node, and this
machine has none (see the README).
"""

from __future__ import annotations

import argparse
import shlex
import struct
import sys
import time
from pathlib import Path

from vhost_device_gpu.testing import bench_daemon
from vhost_user_core.testing.procstat import cpu_seconds, peak_rss_kib

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpu import Guest  # noqa: E402

OURS = (
    f"{shlex.quote(sys.executable)} -m vhost_device_gpu.main -s {{sock}} -g virglrenderer "
    "--log-level warning"
)
W, H = 1280, 800
BGRX, FENCE = 2, 1


def hdr(kind: int, flags: int = 0, fence: int = 0, ctx: int = 0) -> bytes:
    return struct.pack("<IIQIB3x", kind, flags, fence, ctx, 0)


def vcmd(op: int, obj: int, payload: bytes) -> bytes:
    return struct.pack("<I", op | obj << 8 | (len(payload) // 4) << 16) + payload


def clear(rgba: tuple[float, float, float, float]) -> bytes:
    return vcmd(7, 0, struct.pack("<I4fdI", 4, *rgba, 0.0, 0))


def submit(stream: bytes, fence: int) -> bytes:
    return hdr(0x207, FENCE, fence, 1) + struct.pack("<I4x", len(stream)) + stream


def timed(seconds: float, step: object) -> tuple[int, float]:
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step(count)  # type: ignore[operator]
        count += 1
    return count, time.perf_counter() - t0


def bench(command: str, seconds: float) -> list[str]:
    rows = []
    with bench_daemon(command, start_timeout=30) as daemon:
        pid = daemon.process.pid
        g = Guest(daemon.frontend, daemon.control)
        size = W * H * 4
        backing = g.ram.alloc(size, align=4096)
        g.ok(hdr(0x200, ctx=1) + struct.pack("<II64s", 5, 0, b"bench"))
        g.ok(hdr(0x204) + struct.pack("<11I4x", 1, 2, BGRX, 2 | 1 << 18, W, H, 1, 1, 0, 0, 0))
        g.ok(hdr(0x106) + struct.pack("<II", 1, 1) + struct.pack("<QI4x", backing, size))
        g.ok(hdr(0x202, ctx=1) + struct.pack("<I4x", 1))
        surface = vcmd(1, 8, struct.pack("<IIIII", 1, 1, BGRX, 0, 0))
        g.ok(submit(surface + vcmd(5, 0, struct.pack("<III", 1, 0, 1)), 1))

        small = [g.command(submit(clear((0.0, 1.0, 0.0, 1.0)), 2 + i)) for i in range(64)]
        n_small = len(submit(clear((0.0, 1.0, 0.0, 1.0)), 0))
        cpu0 = cpu_seconds(pid)
        n, elapsed = timed(seconds, lambda i: g.run([(small[i % 64], n_small)]))
        cpu = cpu_seconds(pid) - cpu0
        rows.append(
            f"| SUBMIT_3D (a {W}x{H} clear) + fence | {n / elapsed:.0f} round trips/s "
            f"| {cpu / n * 1e3:.3f} ms |"
        )

        t = hdr(0x206, ctx=1) + struct.pack("<6IQIIII", 0, 0, 0, W, H, 1, 0, 1, 0, W * 4, 0)
        tgpa = g.command(t)
        cpu0 = cpu_seconds(pid)
        n, elapsed = timed(seconds, lambda i: g.run([(tgpa, len(t))]))
        cpu = cpu_seconds(pid) - cpu0
        rows.append(
            f"| TRANSFER_FROM_HOST_3D {W}x{H} | {n * size / elapsed / 1e6:.0f} MB/s "
            f"| {cpu / n * 1e3:.3f} ms/transfer |"
        )

        g.ok(hdr(0x103) + struct.pack("<IIII", 0, 0, W, H) + struct.pack("<II", 0, 1))
        colours = [
            g.command(submit(clear((i / 64, 0.0, 1 - i / 64, 1.0)), 1000 + i)) for i in range(64)
        ]
        f = g.command(hdr(0x104) + struct.pack("<IIII", 0, 0, W, H) + struct.pack("<I4x", 1))
        before = daemon.display.update_bytes
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        n, _ = timed(seconds, lambda i: g.run([(colours[i % 64], n_small), (f, 48)]))
        daemon.display.wait_update_bytes(before + n * size, timeout=120)
        elapsed = time.perf_counter() - t0  # until the display has every frame
        cpu = cpu_seconds(pid) - cpu0
        rows.append(
            f"| clear + scanout {W}x{H} | {n / elapsed:.1f} frames/s "
            f"| {cpu / n * 1e3:.2f} ms/frame |"
        )
        cpu0 = cpu_seconds(pid)
        time.sleep(2.0)
        idle = cpu_seconds(pid) - cpu0
        rows.append(f"| idle 2 s | | {idle * 1e3:.1f} ms CPU |")
        rows.append(f"| peak RSS | {peak_rss_kib(pid) / 1024:.1f} MiB | |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    print("| measurement | rate | daemon CPU |")
    print("|---|---|---|")
    for row in bench(OURS, args.seconds):
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
