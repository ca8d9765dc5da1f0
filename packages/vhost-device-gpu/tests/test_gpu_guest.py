"""vhost-device-gpu serving a real Linux guest through QEMU 10's vhost-user-gpu-pci and
the guest's virtio-gpu KMS driver, under TCG. One boot checks: the connector's modes
from the EDID QEMU gave the daemon; a pattern drawn into a DRM dumb buffer and set on
the CRTC, matched pixel for pixel in QEMU's screendump; the cursor; a mode change and a
second pattern; fbcon's boot traffic answered without one refusal. A second boot on
the same daemon shows it listens again."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from vhost_device_gpu.testing import Qmp, read_ppm
from vhost_user_core.testing.guest_program import build_static
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

PROGRAM = Path(__file__).parent.parent / "guest" / "drm_pattern.c"
SIZES = {1: (1024, 768), 2: (800, 600)}  # pattern n is drawn at its mode
DRM_MODULES = "drm drm_kms_helper drm_shmem_helper virtio_dma_buf virtio_gpu"

LOAD = f"""
for m in {DRM_MODULES}; do insmod /lib/modules/$m.ko || echo "INSMOD-FAILED $m"; done
i=0
while [ ! -e /dev/dri/card0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
"""
SCRIPT = (
    LOAD
    + """
for port in /sys/class/virtio-ports/*; do
    if [ "$(cat "$port/name")" = ctl ]; then CTL="/dev/${port##*/}"; fi
done
for e in /sys/class/drm/card0-*/edid; do
    echo "EDID $(cat "$e" | od -An -tx1 -v | tr -d ' \\n')"
done
/drm_pattern "$CTL"
echo "PATTERN-RC=$?"
dmesg | grep -i -E 'virtio_gpu|drm' | grep -i -E 'error|fail|warn' | sed 's/^/DMESG-PROBLEM /'
true
"""
)


def pattern(n: int, x: int, y: int) -> tuple[int, int, int]:
    """drm_pattern.c's pattern n at (x, y), as (r, g, b)."""
    if n == 1:
        return (x * 7) & 0xFF, (y * 5) & 0xFF, (x ^ y) & 0xFF
    return (y * 3) & 0xFF, ((x + y) * 2) & 0xFF, (x * 11) & 0xFF


def expected(n: int, width: int, height: int) -> bytes:
    return b"".join(bytes(pattern(n, x, y)) for y in range(height) for x in range(width))


def first_difference(got: bytes, want: bytes, width: int) -> str:
    for i in range(0, min(len(got), len(want)), 3):
        if got[i : i + 3] != want[i : i + 3]:
            x, y = (i // 3) % width, (i // 3) // width
            return f"first at ({x}, {y}): {got[i : i + 3].hex()} != {want[i : i + 3].hex()}"
    return f"lengths {len(got)} != {len(want)}"


class Host:
    """What the host does when the guest prints SHOT n: a QMP screendump, then a line
    on the control port so the guest goes on."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.qmp = tmp / "qmp.sock"
        self.ctl = tmp / "ctl.sock"
        self.shots: dict[int, tuple[int, int, bytes]] = {}
        self.ctl_sock: socket.socket | None = None
        self.lock = threading.Lock()

    def devices(self, gpu_socket: Path) -> list[str]:
        return [
            *vhost_user_device(gpu_socket, "vhost-user-gpu-pci", xres=1024, yres=768),
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
            "-chardev", f"socket,id=ctl,path={self.ctl},server=on,wait=off",
            "-device", "virtserialport,chardev=ctl,name=ctl",
        ]  # fmt: skip

    def shot(self, n: int, width: int, height: int) -> None:
        """The guest has its flush answered once the daemon queued the display messages;
        QEMU shows them a moment later. So the screendump is retaken until it shows
        pattern n at its size, for up to 10 s; the last one is what the test checks."""
        path = self.tmp / f"shot{n}.ppm"
        want = expected(n, width, height)
        deadline = time.monotonic() + 10
        qmp = Qmp(str(self.qmp))
        try:
            while True:
                qmp.execute("screendump", filename=str(path))
                self.shots[n] = read_ppm(path.read_bytes())
                if self.shots[n] == (width, height, want) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            qmp.close()
        with self.lock:
            if self.ctl_sock is None:
                self.ctl_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.ctl_sock.connect(str(self.ctl))
            self.ctl_sock.sendall(b"go\n")

    def close(self) -> None:
        if self.ctl_sock is not None:
            self.ctl_sock.close()


def test_guest_draws_pixel_exact_and_reconnects(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    program = build_static(PROGRAM, "drm_pattern")
    gpu_socket, log = tmp_path / "gpu.sock", tmp_path / "gpu.log"
    argv = [sys.executable, "-m", "vhost_device_gpu.main", "-s", str(gpu_socket), "-g", "2d"]
    with daemon_process([*argv, "--log-level", "debug"], log=log, sockets=[gpu_socket]):
        host = Host(tmp_path)
        try:
            result = guest.run(
                SCRIPT,
                devices=host.devices(gpu_socket),
                extra_files={"drm_pattern": program},
                on_console={
                    "SHOT 1 ": lambda: host.shot(1, *SIZES[1]),
                    "SHOT 2 ": lambda: host.shot(2, *SIZES[2]),
                },
                timeout=150,
            )
        finally:
            host.close()
        out = result.script_output
        assert result.rc == 0, result.console_output
        assert "INSMOD-FAILED" not in out and "PATTERN-RC=0" in out, out
        # the connector's modes come from the EDID QEMU gave the daemon: 1024x768 first
        modes = [line.split()[1:] for line in out.splitlines() if line.startswith("MODE ")]
        assert modes[0] == ["1024x768", "preferred"], out
        assert ["800x600"] in modes
        (edid,) = [
            bytes.fromhex(line.split()[1]) for line in out.splitlines() if line.startswith("EDID ")
        ]
        assert edid[:8] == bytes.fromhex("00ffffffffffff00")
        timing = edid[54:72]  # the first detailed timing: the preferred mode
        assert (timing[2] | (timing[4] >> 4) << 8, timing[5] | (timing[7] >> 4) << 8) == (1024, 768)
        # pattern 1 at 1024x768, then pattern 2 at 800x600: pixel for pixel
        for n, (width, height) in SIZES.items():
            w, h, rgb = host.shots[n]
            assert (w, h) == (width, height)
            want = expected(n, w, h)
            assert rgb == want, f"shot {n}: {first_difference(rgb, want, w)}"
        text = log.read_text()
        assert "cursor image" in text and "hot (0, 0)" in text, text[-2000:]
        assert "cursor at (100, 50)" in text
        assert "DMESG-PROBLEM" not in out, out
        problems = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]
        assert not problems, "\n".join(problems)

        again = guest.run(
            LOAD + "cat /sys/class/drm/card0-Virtual-1/modes | head -1\n",
            devices=vhost_user_device(gpu_socket, "vhost-user-gpu-pci"),
            timeout=180,
        )
        assert again.rc == 0 and "1280x800" in again.script_output, again.console_output
