"""System packages: what pip cannot provide, installed with apt on Debian.

The interpreter's needs are checked by what they are for (can it make a venv, is there a C
compiler and Python.h), so a capable machine, a pyenv Python included, installs nothing for
them. Everything else is each workspace package's `[tool.vhost-device] debian` list (QEMU
for the core's guest tests, PipeWire for sound, ...). Trixie and newer carry all of it.
Bookworm's QEMU is 7.2: there it all comes from bookworm-backports where that has it, since
QEMU 10 is only there and pulls backports' libpipewire, so PipeWire's headers and daemon
must come from there as well. The backports suite is added from the mirror (and with the
signing key) the machine's own Debian sources use, never from an address of ours.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from xtask import aptsources
from xtask.proc import TaskError, output, run, say
from xtask.workspace import ROOT, Package

SYSTEM_DEPS = ROOT / "packages/vhost-core/src/vhost_user_core/testing/system_deps.py"
OS_RELEASE = Path("/etc/os-release")
#: The file xtask owns in sources.list.d (rewritten when the machine's mirror changes).
BACKPORTS_FILE = "vhost-device-py-backports.sources"
#: Debian releases whose own suites miss something, and the suite that has it.
BACKPORTS = {"bookworm": "bookworm-backports"}
#: The oldest Debian release xtask can set up (VERSION_ID).
MIN_DEBIAN = 12

_updated = False


@dataclass(frozen=True)
class Release:
    """A Debian release and where its missing packages come from (None: the release)."""

    codename: str
    backports: str | None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5) assignments, unquoted."""
    fields = {}
    for line in text.splitlines():
        name, eq, value = line.strip().partition("=")
        if eq and name and not name.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:  # unbalanced quotes: take the value as it stands
                words = [value.strip("'\"")]
            fields[name] = words[0] if words else ""
    return fields


def choose_release(os_release: Mapping[str, str]) -> Release | None:
    """How to install on this system: None if it is not Debian (ID), a Release otherwise.
    A Debian release with no VERSION_ID is testing or unstable, newer than any stable."""
    if os_release.get("ID") != "debian":
        return None
    codename = os_release.get("VERSION_CODENAME", "")
    version = os_release.get("VERSION_ID", "")
    if version.isdigit() and int(version) < MIN_DEBIAN:
        raise TaskError(
            f"Debian {version} ({codename or 'unknown'}) is too old: "
            f"xtask needs Debian {MIN_DEBIAN} (bookworm) or newer"
        )
    if not codename:
        raise TaskError("/etc/os-release has no VERSION_CODENAME: cannot tell the suites")
    return Release(codename, BACKPORTS.get(codename))


def other_system_message(os_release: Mapping[str, str], debs: list[str]) -> str:
    """What a non-Debian system must install itself, as Debian package names."""
    name = os_release.get("PRETTY_NAME") or os_release.get("ID") or "this system"
    return (
        f"{name} is not Debian, so xtask installs no system packages: install a C compiler, "
        "Python headers (and venv), groff and the equivalents of these Debian packages "
        f"(QEMU {_load_system_deps().MIN_QEMU_MAJOR} or newer): {' '.join(debs)}"
    )


def _root_prefix() -> list[str]:
    """Nothing as root, `sudo` otherwise (it may ask for a password on a terminal)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise TaskError("installing system packages needs root or sudo")


def apt_source_paths() -> tuple[Path, Path]:
    """apt's main list and its parts directory, as apt itself is configured
    (`APT_CONFIG` and apt.conf.d included)."""
    paths = {"LIST": Path("/etc/apt/sources.list"), "PARTS": Path("/etc/apt/sources.list.d")}
    out = output(
        [
            "apt-config",
            "shell",
            "LIST",
            "Dir::Etc::sourcelist/f",
            "PARTS",
            "Dir::Etc::sourceparts/d",
        ]
    )
    for line in (out or "").splitlines():
        name, _, value = line.partition("=")
        words = shlex.split(value)
        if name in paths and words:
            paths[name] = Path(words[0])
    return paths["LIST"], paths["PARTS"]


def backports_text(
    sources: list[aptsources.Source], codename: str, suite: str, own: Path
) -> str | None:
    """What xtask's source file `own` should hold to add `suite`, from the mirrors of the
    Debian sources for `codename` among `sources`; None if another source already serves
    `suite`. TaskError (saying what to add) if no Debian source is configured."""
    others = [s for s in sources if s.origin != own]
    if aptsources.has_suite(others, suite):
        return None
    archives = aptsources.debian_archives(others, codename)
    if not archives:
        raise TaskError(
            f"apt has no Debian source for {codename} to take a mirror from: add your Debian "
            f"mirror (Types: deb, Suites: {codename}, Components: main) to "
            f"{own.parent / 'debian.sources'} and run again"
        )
    origins = ", ".join(dict.fromkeys(str(s.origin) for s in archives))
    header = (
        f"# Written by `python3 xtask` (xtask/system.py): {suite} from the mirror of {origins}.\n"
    )
    return header + aptsources.suite_stanzas(archives, suite)


def ensure_backports(codename: str, suite: str) -> None:
    """Add (or bring up to date) xtask's source file for `suite`; remove it if another
    source now serves the suite (apt warns about sources configured twice)."""
    global _updated
    sourcelist, sourceparts = apt_source_paths()
    own = sourceparts / BACKPORTS_FILE
    text = backports_text(aptsources.read_sources(sourcelist, sourceparts), codename, suite, own)
    if text is None:
        if own.is_file():
            say(f"removing {own}: {suite} is configured elsewhere")
            run([*_root_prefix(), "rm", "-f", own])
            _updated = False
        return
    if own.is_file() and own.read_text(errors="replace") == text:
        return
    say(f"adding {suite} to apt sources ({own}), from the machine's own Debian mirror")
    # Written beside it then renamed, so a concurrent apt never reads half a file.
    staged = own.with_name(own.name + ".new")
    subprocess.run(
        [*_root_prefix(), "tee", str(staged)],
        input=text.encode(),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    run([*_root_prefix(), "mv", staged, own])
    _updated = False


def apt_install(packages: list[str], release: Release) -> None:
    """`apt-get install` (from the release's backports suite where it has them, if it
    needs one), running `apt-get update` first once per xtask run (a fresh CI machine has
    no lists)."""
    global _updated
    prefix = [*_root_prefix(), "env", "DEBIAN_FRONTEND=noninteractive"]
    target: list[str] = []
    if release.backports is not None:
        ensure_backports(release.codename, release.backports)
        target = ["-t", release.backports]
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
    os_release = parse_os_release(OS_RELEASE.read_text()) if OS_RELEASE.is_file() else {}
    release = choose_release(os_release) if shutil.which("apt-get") else None
    if release is None:
        say(other_system_message(os_release, debs))
    else:
        installed = _installed_debs(debs)
        wanted = missing_build_packages()
        wanted += [d for d in debs if d not in installed and d not in wanted]
        if wanted:
            apt_install(wanted, release)
    deps = _load_system_deps()
    if "qemu-system-x86" in debs and deps.qemu_major() < deps.MIN_QEMU_MAJOR:
        raise TaskError(
            f"QEMU {deps.MIN_QEMU_MAJOR}+ is needed for the guest tests; found "
            f"{deps.qemu_major() or 'none'} (on bookworm it comes from bookworm-backports)"
        )
