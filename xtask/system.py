"""System packages: what pip cannot provide, installed with apt on Debian.

The interpreter's needs are checked by what they are for (can it make a venv, is there a C
compiler and Python.h), so a capable machine, a pyenv Python included, installs nothing for
them. Everything else is each workspace package's `[tool.vhost-device] debian` list (QEMU
for the core's guest tests, PipeWire for sound, ...). On bookworm all of it comes from
bookworm-backports where that has it: QEMU 10 is only there, and it pulls backports'
libpipewire, so PipeWire's headers and daemon must come from there as well.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from xtask.proc import TaskError, output, run, say
from xtask.workspace import ROOT, Package

SYSTEM_DEPS = ROOT / "packages/vhost-core/src/vhost_user_core/testing/system_deps.py"
BACKPORTS = Path("/etc/apt/sources.list.d/vhost-device-py-backports.sources")
BACKPORTS_SOURCE = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

_updated = False


def is_debian() -> bool:
    return Path("/etc/debian_version").is_file() and shutil.which("apt-get") is not None


def _root_prefix() -> list[str]:
    """Nothing as root, `sudo` otherwise (it may ask for a password on a terminal)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise TaskError("installing system packages needs root or sudo")


def _codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    return ""


def _has_backports() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    return any(
        p.is_file() and "bookworm-backports" in p.read_text(errors="replace") for p in sources
    )


def apt_install(packages: list[str]) -> None:
    """`apt-get install` (from bookworm-backports where it has them, on bookworm),
    running `apt-get update` first once per xtask run (a fresh CI machine has no lists)."""
    global _updated
    prefix = [*_root_prefix(), "env", "DEBIAN_FRONTEND=noninteractive"]
    target: list[str] = []
    if _codename() == "bookworm":
        if not _has_backports():
            say(f"adding bookworm-backports to apt sources ({BACKPORTS})")
            subprocess.run(
                [*_root_prefix(), "tee", str(BACKPORTS)],
                input=BACKPORTS_SOURCE.encode(),
                stdout=subprocess.DEVNULL,
                check=True,
            )
            _updated = False
        target = ["-t", "bookworm-backports"]
    if not _updated:
        say("apt-get update")
        run([*prefix, "apt-get", "update", "-qq"])
        _updated = True
    say(f"apt-get install {' '.join(packages)}")
    run([*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *target, *packages])


def _debian_python() -> bool:
    """Only Debian's own interpreter can be completed with Debian packages."""
    return sys.base_prefix == "/usr"


def _python_package(suffix: str) -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}-{suffix}"


def missing_build_packages() -> list[str]:
    """Debian packages needed to create the venv and compile the Cython extensions."""
    wanted: list[str] = []
    problems: list[str] = []
    if importlib.util.find_spec("ensurepip") is None:  # Debian moves it to pythonX.Y-venv
        if _debian_python():
            wanted.append(_python_package("venv"))
        else:
            problems.append(f"{sys.executable} has no ensurepip, so cannot create a venv")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        if _debian_python():
            wanted.append(_python_package("dev"))
        else:
            problems.append(f"{sys.executable} has no Python.h to compile extensions against")
    if shutil.which("gcc") is None or not Path("/usr/include/stdio.h").is_file():
        wanted += ["gcc", "libc6-dev"]
    if shutil.which("groff") is None:  # the man page tests render pages with groff
        wanted.append("groff-base")
    if problems:
        raise TaskError("; ".join(problems) + " (use Debian's python3, or install them)")
    return wanted


def _load_system_deps() -> ModuleType:
    """vhost_user_core.testing.system_deps, imported by file path: it is stdlib-only and
    runs before the venv (where the installed package lives) exists."""
    spec = importlib.util.spec_from_file_location("_vhost_system_deps", SYSTEM_DEPS)
    if spec is None or spec.loader is None:
        raise TaskError(f"cannot import {SYSTEM_DEPS}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed_debs(names: list[str]) -> set[str]:
    """Which of `names` dpkg reports as installed."""
    fmt = "${Package} ${db:Status-Status}\n"
    # dpkg-query fails as a whole if one name is unknown, so ask one by one then.
    listed = output(["dpkg-query", "-W", "-f", fmt, *names]) if names else ""
    if listed is None:
        listed = "".join(output(["dpkg-query", "-W", "-f", fmt, n]) or "" for n in names)
    return {
        line.split()[0].split(":")[0] for line in listed.splitlines() if line.endswith(" installed")
    }


def package_debs(packages: list[Package]) -> list[str]:
    """Every workspace package's `[tool.vhost-device] debian` list (what it needs to
    build, run and be tested: headers, libraries, daemons, QEMU), without duplicates."""
    wanted: list[str] = []
    for package in packages:
        for name in package.tool.get("debian", []):
            if str(name) not in wanted:
                wanted.append(str(name))
    return wanted


def ensure(packages: list[Package]) -> None:
    """Install whatever the interpreter and the workspace packages miss."""
    debs = package_debs(packages)
    if not is_debian():
        say(
            "not a Debian system: install a C compiler, Python headers, groff and the "
            f"equivalents of {' '.join(debs)} yourself"
        )
        return
    installed = _installed_debs(debs)
    wanted = missing_build_packages()
    wanted += [d for d in debs if d not in installed and d not in wanted]
    if wanted:
        apt_install(wanted)
    deps = _load_system_deps()
    if "qemu-system-x86" in debs and deps.qemu_major() < deps.MIN_QEMU_MAJOR:
        raise TaskError(
            f"QEMU {deps.MIN_QEMU_MAJOR}+ is needed for the guest tests; found "
            f"{deps.qemu_major() or 'none'} (on bookworm it comes from bookworm-backports)"
        )
