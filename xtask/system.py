"""System packages: what pip cannot provide, installed with apt on Debian.

Each need is checked by what it is for (can this interpreter make a venv, is there a C
compiler and Python.h) rather than by package name, so an already-capable machine, a pyenv
Python included, installs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from xtask.proc import TaskError, run, say
from xtask.workspace import ROOT

SYSTEM_DEPS = ROOT / "packages/vhost-core/src/vhost_user_core/testing/system_deps.py"

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


def apt_install(packages: list[str]) -> None:
    """`apt-get install`, running `apt-get update` first once per xtask run (a fresh CI
    machine has no package lists)."""
    global _updated
    prefix = [*_root_prefix(), "env", "DEBIAN_FRONTEND=noninteractive"]
    if not _updated:
        say("apt-get update")
        run([*prefix, "apt-get", "update", "-qq"])
        _updated = True
    say(f"apt-get install {' '.join(packages)}")
    run([*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages])


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


def _load_system_deps() -> ModuleType | None:
    """vhost_user_core.testing.system_deps, imported by file path: it is stdlib-only and
    must run before the venv (where the installed package lives) exists."""
    if not SYSTEM_DEPS.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_vhost_system_deps", SYSTEM_DEPS)
    if spec is None or spec.loader is None:
        raise TaskError(f"cannot import {SYSTEM_DEPS}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure(*, guest: bool) -> None:
    """Install what is missing; `guest` adds QEMU and the guest image's tools."""
    if not is_debian():
        say(
            "not a Debian system: install a C compiler, Python headers, groff"
            + (", QEMU and busybox" if guest else "")
            + " yourself"
        )
        return
    wanted = missing_build_packages()
    if wanted:
        apt_install(wanted)
    if guest:
        module = _load_system_deps()
        if module is None:
            say(f"warning: {SYSTEM_DEPS.relative_to(ROOT)} is missing; guest tests will fail")
            return
        say("checking guest test packages (QEMU, busybox)")
        module.ensure_system_packages(log=say)
