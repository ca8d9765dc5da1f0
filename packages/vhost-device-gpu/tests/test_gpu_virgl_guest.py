"""virgl 3D for a real guest: QEMU 10's vhost-user-gpu-pci, the guest's virtio-gpu DRM
driver and Debian's own Mesa (the guest runs on this machine's root, `HostRootGuest`),
our daemon rendering with virglrenderer. One boot checks: Mesa's EGL driver is
virtio_gpu (eglinfo) and its GL renderer virgl (not its software fallback) for a GLES
program (guest_virgl.py), which draws a known picture with scissored clears and puts it
on the CRTC, matched pixel for pixel in QEMU's screendump; `kmscube -c 3` to its end,
and a longer kmscube's frames on the screen (its grey background, a coloured cube)."""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from vhost_device_gpu.testing import Qmp, read_ppm
from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

WIDTH, HEIGHT = 640, 480
GUEST_SCRIPT = r"""
exec >"$OUTPORT" 2>&1
for port in /sys/class/virtio-ports/*; do
    if [ "$(cat "$port/name")" = ctl ]; then CTL="/dev/${port##*/}"; fi
done
i=0
while [ ! -e /dev/dri/card0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
ls /dev/dri | sed 's/^/dri: /'
# mesa-utils-bin's tools carry the architecture in their names
for e in /usr/bin/eglinfo /usr/bin/eglinfo.*; do [ -x "$e" ] && EGLINFO=$e && break; done
"$EGLINFO" 2>&1 | grep -E '^[A-Za-z]+ platform:|driver name' | sed 's/^/eglinfo: /'
"$PYTHON" "$PROGRAM" "$CTL" || echo "program-failed: $?"
# kmscube stops when its stdin is readable: give it a fifo nobody writes to (held
# open read-write here, so opening it never blocks)
mkfifo /tmp/cube-in
exec 3<>/tmp/cube-in
kmscube -D /dev/dri/card0 -c 3 </tmp/cube-in >/tmp/kmscube-3.log 2>&1
echo "kmscube-rc: $?"
sed 's/^/kmscube: /' /tmp/kmscube-3.log | tail -2
# then one that runs until the host has its screendump (whatever the frame rate)
kmscube -D /dev/dri/card0 -c 1000000 </tmp/cube-in >/tmp/kmscube.log 2>&1 &
CUBE=$!
i=0
while ! grep -q "Using modifier" /tmp/kmscube.log && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
done
sleep 0.5
echo "SHOT 2" >"$CTL"
read -r answer <"$CTL"
kill $CUBE
wait $CUBE
exec 3>&-
dmesg | grep -i -E 'virtio_gpu|\[drm' | grep -i -E 'error|fail|fault' | sed 's/^/dmesg-problem: /'
true
"""


def expected(x: int, y: int) -> tuple[int, int, int]:
    """guest_virgl.py's picture: red, the bottom-left quarter green, the top-right blue."""
    left, top = x < WIDTH // 2, y < HEIGHT // 2
    if left and not top:
        return (0, 255, 0)
    if not left and top:
        return (0, 0, 255)
    return (255, 0, 0)


class Screens:
    """The host's side of the control port: on `SHOT n` a QMP screendump (retaken until
    `done(n, shot)` holds, or 20 s), then `go` back to the guest."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.qmp, self.ctl = tmp / "qmp.sock", tmp / "ctl.sock"
        self.shots: dict[int, tuple[int, int, bytes]] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stop = False

    def devices(self) -> list[str]:
        return [
            "-qmp", f"unix:{self.qmp},server=on,wait=off",
            "-chardev", f"socket,id=ctl,path={self.ctl},server=on,wait=off",
            "-device", "virtserialport,chardev=ctl,name=ctl",
        ]  # fmt: skip

    @staticmethod
    def done(n: int, shot: tuple[int, int, bytes]) -> bool:
        w, h, rgb = shot
        if (w, h) != (WIDTH, HEIGHT):
            return False
        if n == 1:
            return all(
                rgb[(y * w + x) * 3 : (y * w + x) * 3 + 3] == bytes(expected(x, y))
                for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))
            )
        # kmscube's grey background (glClearColor 0.5) around a cube of coloured faces
        corner = rgb[:3]
        grey = all(abs(c - 0x80) <= 1 for c in corner) and len(set(corner)) == 1
        return grey and len({rgb[i : i + 3] for i in range(0, len(rgb), 3 * 97)}) > 2

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self.ctl.exists() and time.monotonic() < deadline and not self.stop:
            time.sleep(0.1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while not self.stop:
            try:
                sock.connect(str(self.ctl))
                break
            except OSError:
                time.sleep(0.1)
        reader = sock.makefile("rb")
        for line in reader:
            words = line.split()
            if len(words) == 2 and words[0] == b"SHOT":
                n = int(words[1])
                qmp = Qmp(str(self.qmp))
                try:
                    until = time.monotonic() + 20
                    while True:
                        path = self.tmp / f"shot{n}.ppm"
                        qmp.execute("screendump", filename=str(path))
                        self.shots[n] = read_ppm(path.read_bytes())
                        if self.done(n, self.shots[n]) or time.monotonic() > until:
                            break
                        time.sleep(0.2)
                finally:
                    qmp.close()
                sock.sendall(b"go\n")
        sock.close()


def test_guest_mesa_renders_through_virgl(guest_image: GuestImage, tmp_path: Path) -> None:
    gpu_socket, log = tmp_path / "gpu.sock", tmp_path / "gpu.log"
    argv = [sys.executable, "-m", "vhost_device_gpu.main", "-s", str(gpu_socket)]
    screens = Screens(tmp_path)
    with daemon_process([*argv, "-g", "virglrenderer"], log=log, sockets=[gpu_socket]):
        screens.thread.start()
        guest = HostRootGuest(guest_image, workdir=tmp_path)
        try:
            result = guest.run(
                ["/bin/sh", "-c", GUEST_SCRIPT],
                cwd=tmp_path,
                env={
                    "PYTHON": sys.executable,
                    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "PROGRAM": str(Path(__file__).parent / "guest_virgl.py"),
                    "HOME": str(tmp_path),
                },
                modules=[ModuleSpec("virtio_gpu")],
                devices=[
                    *vhost_user_device(gpu_socket, "vhost-user-gpu-pci", xres=WIDTH, yres=HEIGHT),
                    *screens.devices(),
                ],
                timeout=400,
            )
        finally:
            screens.stop = True
    output = result.output_bytes.decode(errors="replace")
    shown = f"{output}\n--- console ---\n{result.console_output[-3000:]}"
    shown += f"\n--- daemon ---\n{log.read_text()[-4000:]}"
    assert result.rc == 0, shown
    assert "program-failed" not in output, shown
    # Mesa's virgl driver, not kms_swrast or llvmpipe in the guest
    renderer = [ln for ln in output.splitlines() if ln.startswith("gl-renderer: ")]
    assert renderer and "virgl" in renderer[0], shown
    # eglinfo's GBM platform (on card0) is Mesa's virtio_gpu driver, not kms_swrast
    egl = [ln[len("eglinfo: ") :] for ln in output.splitlines() if ln.startswith("eglinfo: ")]
    assert "GBM platform:" in egl, shown
    assert egl[egl.index("GBM platform:") + 1] == "EGL driver name: virtio_gpu", shown
    # the picture, pixel for pixel
    w, h, rgb = screens.shots[1]
    assert (w, h) == (WIDTH, HEIGHT), shown
    want = b"".join(bytes(expected(x, y)) for y in range(h) for x in range(w))
    if rgb != want:
        first = next(i for i in range(0, len(rgb), 3) if rgb[i : i + 3] != want[i : i + 3])
        x, y = (first // 3) % w, (first // 3) // w
        pytest.fail(
            f"screendump differs first at ({x}, {y}): {rgb[first : first + 3].hex()}\n{shown}"
        )
    # kmscube: its frames reached the screen
    assert "kmscube-rc: 0" in output, shown
    assert re.search(r"^kmscube: Rendered \d+ frames", output, re.M), shown
    assert Screens.done(2, screens.shots[2]), shown
    assert "dmesg-problem" not in output, shown
    # Mesa's every command was served: not one refused
    problems = [ln for ln in log.read_text().splitlines() if " WARNING " in ln or " ERROR " in ln]
    assert not problems, "\n".join(problems)
