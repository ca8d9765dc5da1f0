"""Debian packages the guest tests need, and an idempotent installer for them.

Stdlib only: `xtask` runs it before any virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BACKPORTS = Path("/etc/apt/sources.list.d/vhost-device-py-backports.sources")
BACKPORTS_SOURCE = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
#: (package, command or file that shows it is installed, needs backports)
PACKAGES = [
    ("qemu-system-x86", "qemu-system-x86_64", True),
    ("busybox-static", "/bin/busybox", False),
]
#: QEMU 10 is the first with every vhost-user PCI device we test against.
MIN_QEMU_MAJOR = 10


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    return ""


def qemu_major() -> int:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return 0
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    try:
        return int(out.split("version", 1)[1].split(".")[0])
    except (IndexError, ValueError):
        return 0


def _present(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None


def _sudo() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise SystemExit("installing Debian packages needs root (or sudo)")


def has_backports() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    return any(
        p.is_file() and "bookworm-backports" in p.read_text(errors="replace") for p in sources
    )


def ensure_system_packages(log=print) -> None:  # type: ignore[no-untyped-def]
    """Install what is missing; quick when everything is there."""
    missing = [(pkg, bp) for pkg, probe, bp in PACKAGES if not _present(probe)]
    if qemu_major() < MIN_QEMU_MAJOR and ("qemu-system-x86", True) not in missing:
        missing.append(("qemu-system-x86", True))
    if not missing:
        return
    sudo = _sudo()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if _codename() == "bookworm" and not has_backports():
        log("adding bookworm-backports to apt sources")
        subprocess.run(
            [*sudo, "tee", str(BACKPORTS)],
            input=BACKPORTS_SOURCE.encode(),
            stdout=subprocess.DEVNULL,
            check=True,
        )
    log(f"installing {', '.join(pkg for pkg, _ in missing)}")
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    plain = [pkg for pkg, bp in missing if not bp]
    backports = [pkg for pkg, bp in missing if bp]
    if plain:
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *plain], check=True, env=env)
    if backports:
        target = ["-t", "bookworm-backports"] if _codename() == "bookworm" else []
        subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", *target, *backports], check=True, env=env
        )
    if qemu_major() < MIN_QEMU_MAJOR:
        raise SystemExit(f"QEMU {MIN_QEMU_MAJOR}+ is needed; found {qemu_major() or 'none'}")


if __name__ == "__main__":
    ensure_system_packages(lambda msg: print(msg, file=sys.stderr))
