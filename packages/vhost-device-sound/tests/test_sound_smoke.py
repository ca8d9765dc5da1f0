"""One request through the core's frontend to the vhost-device-sound command.

A pytest test here, and the script xtask's dist test runs with the python of a clean
venv that has only what pip installed from dist/ (`python -I test_sound_smoke.py DAEMON
TMPDIR`): so it imports nothing but the installed packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vhost_device_sound.protocol import Code, Status
from vhost_device_sound.testing import SoundDriver
from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import daemon_process


def smoke(daemon: list[str], tmp: Path) -> None:
    """PCM_INFO on the control queue (null backend: no audio server needed); the daemon
    then exits 0 on SIGTERM."""
    sock = tmp / "snd.sock"
    argv = [*daemon, "--socket", str(sock), "--backend", "null"]
    with (
        daemon_process(argv, log=tmp / "snd.log", sockets=[sock]),
        Frontend.connect(sock) as frontend,
    ):
        status, info = SoundDriver(frontend).query(Code.PCM_INFO, 2, 32)
        assert status is Status.OK and len(info) == 64


def test_sound_smoke(tmp_path: Path) -> None:
    smoke([sys.executable, "-m", "vhost_device_sound.main"], tmp_path)


if __name__ == "__main__":
    smoke([sys.argv[1]], Path(sys.argv[2]))
