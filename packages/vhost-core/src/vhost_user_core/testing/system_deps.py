"""What the guest tests need from the system, and how to tell it is there.

Stdlib only: `xtask` loads it by path, before any virtualenv exists, to check the QEMU it
installed (the Debian packages themselves are listed in vhost-core's pyproject.toml,
`[tool.vhost-device] debian`, and installed by xtask).
"""

from __future__ import annotations

import shutil
import subprocess

#: QEMU 10 is the first with every vhost-user PCI device we test against.
MIN_QEMU_MAJOR = 10


def qemu_major() -> int:
    """The major version of qemu-system-x86_64 on PATH, 0 if there is none."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return 0
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    try:
        return int(out.split("version", 1)[1].split(".")[0])
    except (IndexError, ValueError):
        return 0
