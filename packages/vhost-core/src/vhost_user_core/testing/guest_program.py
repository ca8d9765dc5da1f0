"""Small static C programs for the test guest, compiled on the host and cached.

The test guest is a busybox initramfs: no libc to link against, no compiler and no
tools beyond busybox's. A device's guest tests that need more (raw ioctls, AF_VSOCK
sockets) ship a C source file, and `build_static` turns it into a static binary with
the host's gcc. Pass the bytes to `Guest.run(extra_files={name: data})`: the harness
puts extra files at the root of the initramfs as executables, so the script runs
``/name``.

Binaries are cached under ~/.cache/vhost-device-py/guest-programs/ (or
$VHOST_GUEST_PROGRAMS_DIR) as ``<name>-<key>``, the key a hash of the preprocessed
source (``gcc -E``, so a change in any header it includes counts), the compiler's
version and target, and the flags and libraries. A build writes a temporary file beside
its final name and renames it, so concurrent test runs never see half a binary.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")
#: What a build needs on Debian: the compiler, libc's static archive and headers, and
#: the kernel's uapi headers (<linux/vm_sockets.h>, <sound/asound.h>, ...).
DEBIAN_PACKAGES = ("gcc", "libc6-dev", "linux-libc-dev")
CACHE_ENV = "VHOST_GUEST_PROGRAMS_DIR"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


class GuestProgramBuildError(RuntimeError):
    """A guest program could not be built: no gcc, missing headers or a compile error."""


def default_cache_dir() -> Path:
    """$VHOST_GUEST_PROGRAMS_DIR, else beside the guest image's cache
    (`vhost_user_core.testing.guest_image`)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "vhost-device-py" / "guest-programs"


def _install_hint() -> str:
    return f"install the Debian packages {' '.join(DEBIAN_PACKAGES)} (python3 xtask test does)"


def find_compiler() -> str:
    """The host's gcc, or a `GuestProgramBuildError` saying what to install."""
    cc = shutil.which("gcc")
    if cc is None:
        raise GuestProgramBuildError(
            f"gcc is needed to build the test guest's programs: {_install_hint()}"
        )
    return cc


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), capture_output=True, check=False)


def _flags(cflags: Sequence[str]) -> tuple[str, ...]:
    """The flags with ``-static`` guaranteed: the guest has no shared libraries."""
    return tuple(cflags) if "-static" in cflags else ("-static", *cflags)


def cache_key(
    source: Path,
    *,
    cflags: Sequence[str] = DEFAULT_CFLAGS,
    libs: Sequence[str] = (),
    cc: str | None = None,
) -> str:
    """Hash of what determines the binary: the source with every header it includes
    expanded (``gcc -E -P`` with the same flags, which may define macros or add include
    directories), the compiler's version and target, and the flags and libraries."""
    cc = cc or find_compiler()
    flags = _flags(cflags)
    pre = _run([cc, *flags, "-E", "-P", str(source)])
    if pre.returncode != 0:
        raise GuestProgramBuildError(
            f"cannot preprocess {source} ({_install_hint()} if a header is missing):\n"
            + pre.stderr.decode(errors="replace")
        )
    version = _run([cc, "--version"]).stdout + _run([cc, "-dumpmachine"]).stdout
    digest = hashlib.sha256()
    for part in (pre.stdout, version, "\0".join(flags).encode(), "\0".join(libs).encode()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()[:24]


def compile_program(
    source: Path,
    output: Path,
    *,
    cflags: Sequence[str] = DEFAULT_CFLAGS,
    libs: Sequence[str] = (),
    cc: str | None = None,
) -> str:
    """Compile `source` to `output` (no caching); returns the compiler's diagnostics
    (warnings), raises `GuestProgramBuildError` with them if compilation fails."""
    cc = cc or find_compiler()
    cmd = [cc, *_flags(cflags), "-o", str(output), str(source), *libs]
    done = _run(cmd)
    diagnostics = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise GuestProgramBuildError(
            f"cannot compile {source} for the test guest; {_install_hint()} if a header or "
            f"libc.a is missing.\n$ {' '.join(cmd)}\n{diagnostics}"
        )
    return diagnostics


def build_static_path(
    source: Path,
    name: str,
    *,
    cflags: Sequence[str] = DEFAULT_CFLAGS,
    libs: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> Path:
    """The cached binary of `source`, compiled first if it is not in the cache yet."""
    if not _NAME.match(name):
        raise ValueError(f"not a usable program name: {name!r}")
    cc = find_compiler()
    directory = cache_dir or default_cache_dir()
    cached = directory / f"{name}-{cache_key(source, cflags=cflags, libs=libs, cc=cc)}"
    if cached.is_file():
        return cached
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-")
    os.close(fd)
    try:
        warnings = compile_program(source, Path(tmp), cflags=cflags, libs=libs, cc=cc)
        if warnings:
            log.warning("%s compiled with warnings:\n%s", source, warnings)
        os.chmod(tmp, 0o755)
        os.replace(tmp, cached)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("built %s", cached)
    return cached


def build_static(
    source: Path,
    name: str,
    *,
    cflags: Sequence[str] = DEFAULT_CFLAGS,
    libs: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> bytes:
    """The static binary of `source` for the test guest, built on first use and then
    taken from the cache: what ``Guest.run(extra_files={name: ...})`` wants. `cflags`
    replace the defaults (``-static`` is added if they lack it); `libs` go after the
    source (``-lm``)."""
    path = build_static_path(source, name, cflags=cflags, libs=libs, cache_dir=cache_dir)
    return path.read_bytes()
