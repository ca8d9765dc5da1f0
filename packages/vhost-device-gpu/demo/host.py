"""The host's side of `xtask demo gpu`: at each "SHOT" the guest prints, QEMU's
screendump (QMP) saved as a PNG in the temporary directory, then a line on the control
port so the guest goes on."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from vhost_device_gpu.testing import Qmp
from vhost_user_core.testing.guest_program import build_static

PROGRAM = Path(__file__).parent.parent / "guest" / "drm_pattern.c"


def guest_files() -> dict[str, bytes]:
    return {"drm_pattern": build_static(PROGRAM, "drm_pattern")}


def host(workdir: Path) -> tuple[list[str], dict[str, Callable[[], None]]]:
    control: list[socket.socket] = []

    def shot(n: int) -> Callable[[], None]:
        def take() -> None:
            png = Path(tempfile.gettempdir()) / f"vhost-device-gpu-demo-{n}.png"
            qmp = Qmp(str(workdir / "qmp.sock"))
            try:
                qmp.execute("screendump", filename=str(png), format="png")
            finally:
                qmp.close()
            print(f"demo: QEMU's screendump {n} saved as {png}", flush=True)
            if not control:
                control.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                control[0].connect(str(workdir / "ctl.sock"))
            control[0].sendall(b"go\n")

        return take

    return [], {"SHOT 1 ": shot(1), "SHOT 2 ": shot(2)}
