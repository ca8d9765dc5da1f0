"""Benchmark of the cross-domain context (run by hand; needs Debian's weston).

Starts a headless weston (pixman) and our daemon with `--wayland-socket` as a process,
plays the guest proxy and the VMM through the core's frontend, and prints:
- `wl_display.sync` round trips/s through the context (SEND, then POLLs until the
  callback's done arrives), beside the same round trips of a Python client straight on
  weston's socket (what the compositor and this client cost without the daemon);
- RESOURCE_MAP_BLOB + UNMAP_BLOB pairs/s (each a SHMEM_MAP / SHMEM_UNMAP round trip to
  the frontend's VMM over the backend channel, the fd passed);
- the daemon's CPU per operation, and while a POLL is held (idle: it should be none).

Upstream vhost-device-gpu has no cross-domain context, so there is nothing to run
side by side; the direct client is the baseline.

    .venv/bin/python packages/vhost-device-gpu/bench/bench_crossdomain.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vhost_user_core.frontend import Frontend, FrontendQueue
from vhost_user_core.testing.bench import daemon_process
from vhost_user_core.testing.procstat import cpu_seconds

PAGE = 4096


def hdr(kind: int, flags: int = 0, fence: int = 0, ctx: int = 0, ring: int = 0) -> bytes:
    return struct.pack("<IIQIB3x", kind, flags, fence, ctx, ring)


def cd(cmd: int, body: bytes) -> bytes:
    return struct.pack("<BBHI", cmd, 0, 8 + len(body), 0) + body


def sync_msg(callback: int) -> bytes:
    return struct.pack("<III", 1, 12 << 16 | 0, callback)


class Proxy:
    """The guest proxy on one cross-domain context, its buffers reused."""

    def __init__(self, frontend: Frontend, control: FrontendQueue) -> None:
        assert frontend.ram is not None
        self.ram = frontend.ram
        self.control = control
        self.answer = self.ram.alloc(64)
        self.rings = [self.ram.alloc(PAGE, PAGE) for _ in range(2)]
        self.done: dict[int, int] = {}

    def post(self, payload: bytes) -> int:
        gpa = self.ram.alloc(len(payload))
        self.ram.memory.write(gpa, payload)
        answer = self.ram.alloc(64)
        head = self.control.driver.add([(gpa, len(payload), False), (answer, 64, True)])
        self.control.publish()
        return head

    def wait(self, head: int) -> None:
        while head not in self.done:
            for used, length in self.control.wait_used(1, timeout=10):
                self.done[used] = length
        del self.done[head]

    def cmd(self, payload: bytes) -> None:
        self.wait(self.post(payload))

    def submit(self, commands: bytes, ring: int | None = None) -> int:
        flags, fence = (3, 1) if ring is not None else (0, 0)
        body = struct.pack("<I4x", len(commands)) + commands
        return self.post(hdr(0x207, flags, fence, 1, ring or 0) + body)

    def setup(self) -> None:
        self.cmd(hdr(0x200, ctx=1) + struct.pack("<II64s", 0, 5, b""))
        for rid, gpa in zip((1, 2), self.rings, strict=True):
            blob = struct.pack("<IIIIQQ", rid, 1, 1, 1, 0, PAGE) + struct.pack("<QI4x", gpa, PAGE)
            self.cmd(hdr(0x10C) + blob)
            self.cmd(hdr(0x202, ctx=1) + struct.pack("<I4x", rid))
        self.wait(self.submit(cd(1, struct.pack("<III", 1, 2, 1))))

    def send(self, data: bytes) -> None:
        body = struct.pack("<II84I", 0, len(data), *([0] * 84)) + data
        self.wait(self.submit(cd(4, body)))

    def poll(self) -> bytes:
        self.wait(self.submit(cd(3, b""), ring=1))
        raw = self.ram.memory.read(self.rings[1], PAGE)
        (size,) = struct.unpack_from("<I", raw, 12)
        return raw[352 : 352 + size]

    def roundtrip(self, callback: int) -> None:
        self.send(sync_msg(callback))
        want = struct.pack("<I", callback)
        data = b""
        while True:
            data += self.poll()
            # wl_callback.done (obj = callback, opcode 0) then delete_id on wl_display
            if want + struct.pack("<I", 12 << 16) in data:
                return


def direct_roundtrips(path: str, seconds: float) -> float:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    count, callback, start = 0, 2, time.monotonic()
    while time.monotonic() - start < seconds:
        sock.sendall(sync_msg(callback))
        want = struct.pack("<II", callback, 12 << 16)
        data = b""
        while want not in data:
            data += sock.recv(4096)
        count += 1
        callback += 1
    sock.close()
    return count / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()
    weston = shutil.which("weston")
    if weston is None:
        print("needs weston (Debian: apt install weston)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-crossdomain-") as tmp:
        runtime = Path(tmp) / "xdg"
        runtime.mkdir(mode=0o700)
        env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
        compositor = subprocess.Popen(
            [weston, "--backend=headless", "--renderer=pixman", "--shell=kiosk", "--no-config",
             "--idle-time=0", "--socket=wl-bench", "--width=64", "--height=48"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wl = str(runtime / "wl-bench")
        sock = f"{tmp}/gpu.sock"
        ours = [sys.executable, "-m", "vhost_device_gpu.main", "-s", sock, "-g", "2d",
                "--headless", "--wayland-socket", wl, "--log-level", "warning"]  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(wl):
                if time.monotonic() > deadline:
                    raise TimeoutError("weston did not start")
                time.sleep(0.05)
            time.sleep(0.2)
            with daemon_process(ours, [sock]) as daemon, Frontend.connect(sock) as frontend:
                (control, _) = frontend.start_device(2, 256, memory_size=256 << 20)
                vmm = frontend.open_shmem()
                proxy = Proxy(frontend, control)
                proxy.setup()
                rows: list[tuple[str, float, float | None]] = []

                cpu0, count, callback = cpu_seconds(daemon.pid), 0, 2
                start = time.monotonic()
                while time.monotonic() - start < args.seconds:
                    proxy.roundtrip(callback)
                    callback += 1
                    count += 1
                elapsed = time.monotonic() - start
                cpu = cpu_seconds(daemon.pid) - cpu0
                rows.append(("wl_display.sync through the context", count / elapsed, cpu / count))
                direct = direct_roundtrips(wl, args.seconds)
                rows.append(("wl_display.sync straight to weston", direct, None))

                # host blobs: one 64 KiB R8 image, mapped and unmapped over and over
                proxy.wait(proxy.submit(cd(2, struct.pack("<IIII", 65536, 1, 0x20203852, 0))))
                (blob_id,) = struct.unpack_from("<I", proxy.ram.memory.read(proxy.rings[0], 64), 48)
                proxy.cmd(hdr(0x10C, ctx=1) + struct.pack("<IIIIQQ", 9, 2, 3, 0, blob_id, 65536))
                cpu0, count, start = cpu_seconds(daemon.pid), 0, time.monotonic()
                while time.monotonic() - start < args.seconds:
                    proxy.cmd(hdr(0x208) + struct.pack("<I4xQ", 9, 0))
                    proxy.cmd(hdr(0x209) + struct.pack("<I4x", 9))
                    count += 1
                elapsed = time.monotonic() - start
                cpu = cpu_seconds(daemon.pid) - cpu0
                rows.append(
                    ("MAP_BLOB + UNMAP_BLOB (SHMEM_MAP/UNMAP)", count / elapsed, cpu / count)
                )
                assert len(vmm.requests) == 2 * count

                held = proxy.submit(cd(3, b""), ring=1)
                cpu0 = cpu_seconds(daemon.pid)
                time.sleep(2.0)
                idle = cpu_seconds(daemon.pid) - cpu0
                proxy.send(sync_msg(callback))
                proxy.wait(held)

            print(f"{'operation':44} {'per s':>10} {'daemon CPU ms/op':>17}")
            for name, rate, cpu in rows:
                shown = "-" if cpu is None else f"{cpu * 1000:.3f}"
                print(f"{name:44} {rate:10.0f} {shown:>17}")
            print(f"daemon CPU while a POLL was held for 2 s: {idle * 1000:.1f} ms")
        finally:
            compositor.terminate()
            compositor.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
