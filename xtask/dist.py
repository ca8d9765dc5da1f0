"""`xtask dist`: an sdist and a wheel of every workspace package, as PyPI would get them.

Per package, in dependency order (vhost-user-core first):

1. the sdist, by hatchling (the venv's: an sdist is only files, nothing is compiled);
2. the wheel, built by pip *from that sdist* in pip's own isolated build environment,
   offline: `--no-index`, vhost-user-core from the same output directory, and the
   third-party build and runtime requirements from a wheelhouse fetched once per
   requirement set (`pip wheel`, so sdist-only ones such as pyalsaaudio are built once
   too). A wheel here is therefore proof that the sdist builds with nothing but its
   declared build requirements;
3. a wheel with compiled modules is repaired by auditwheel to a manylinux tag, except
   the system libraries the wheel's metadata names (`Requires-External`, written by
   the core's build hook from the package's pyproject): those come from the user's
   distribution (PipeWire's client library must match the running server, ALSA's its
   configuration), so they are neither grafted into the wheel nor allowed to block it.

Stdlib-only, like the rest of xtask: pip, hatchling and auditwheel run from the venv.
"""

from __future__ import annotations

import email.message
import email.parser
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from xtask.proc import TaskError, clean_env, output, run, say
from xtask.workspace import ROOT, Package, discover, external

#: Third-party wheels the offline builds and installs take, fetched once per set.
WHEELHOUSE = Path.home() / ".cache" / "vhost-device-py" / "wheelhouse"
DIST = ROOT / "dist"
_PIP = ("-m", "pip", "--disable-pip-version-check")
#: Offline builds see only our --find-links, whatever the machine's pip config adds.
_OFFLINE = {"PIP_CONFIG_FILE": os.devnull}


@dataclass(frozen=True)
class Built:
    """One package's distributions in the output directory."""

    package: Package
    sdist: Path
    wheel: Path


def third_party(packages: list[Package]) -> list[str]:
    """Every requirement PyPI provides: the packages' build requirements (hatchling,
    Cython, setuptools) and runtime dependencies, our own packages taken out."""
    wanted: list[str] = []
    for package in packages:
        wanted += package.build_requirements + package.dependencies
    return sorted(set(external(wanted, packages)))


def wheelhouse(py: Path, requirements: list[str], root: Path = WHEELHOUSE) -> Path:
    """A directory of wheels for `requirements` and everything they need, built once per
    requirement set (the only step that asks the index)."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    house = root / key
    stamp = house / "requirements.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == requirements:
        return house
    say(f"wheelhouse {house}: {' '.join(requirements)}")
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir(parents=True)
    # pip wheel takes published wheels as they are and builds the sdist-only ones.
    run([py, *_PIP, "wheel", "-q", "--wheel-dir", house, *requirements], env=clean_env())
    stamp.write_text(json.dumps(requirements))
    return house


def sdist(py: Path, package: Package, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [py, "-m", "hatchling", "build", "-t", "sdist", "-d", tmp],
            cwd=package.path,
            env=clean_env(),
        )
        (built,) = Path(tmp).glob("*.tar.gz")
        return Path(shutil.move(built, out / built.name))


def wheel_from_sdist(py: Path, source: Path, out: Path, house: Path) -> Path:
    """pip builds the wheel from the sdist in its isolated environment, offline."""
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [py, *_PIP, "wheel", "-q", "--no-deps", "--no-index", "--no-cache-dir",
             "--find-links", out, "--find-links", house, "--wheel-dir", tmp, source],
            env=clean_env(**_OFFLINE),
        )  # fmt: skip
        (built,) = Path(tmp).glob("*.whl")
        if not _is_compiled(built):
            return Path(shutil.move(built, out / built.name))
        return repair(py, built, out)


def _is_compiled(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        return any(name.endswith(".so") for name in archive.namelist())


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode(), headersonly=True)


def system_libraries(wheel: Path) -> list[str]:
    """The wheel's `Requires-External` entries (pkg-config names, maybe a version)."""
    entries = wheel_metadata(wheel).get_all("Requires-External") or []
    return [entry.split("(")[0].split(";")[0].strip() for entry in entries]


def sdist_system_libraries(sdist: Path) -> list[str]:
    """The sdist's PKG-INFO `Requires-External` entries, like system_libraries."""
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/PKG-INFO")
        if member is None:
            raise TaskError(f"{sdist.name} has no PKG-INFO")
        info = email.parser.Parser().parsestr(member.read().decode(), headersonly=True)
    return [
        entry.split("(")[0].split(";")[0].strip()
        for entry in info.get_all("Requires-External") or []
    ]


def declared_system_libraries(package: Package) -> list[str]:
    """What the pyproject declares: its extensions' pkg-config libraries, then
    `[tool.vhost-device] system-libraries` (the core's build hook writes these)."""
    targets = package.pyproject.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    hook = targets.get("wheel", {}).get("hooks", {}).get("custom", {})
    names = [
        str(lib)
        for item in hook.get("extensions", [])
        if isinstance(item, dict)
        for lib in item.get("pkg-config", [])
    ]
    names += [str(lib) for lib in package.tool.get("system-libraries", [])]
    return list(dict.fromkeys(names))


def check_metadata(package: Package, sdist: Path, wheel: Path) -> None:
    """The sdist and the wheel name the system libraries the pyproject declares (a
    package declaring some needs the core's hook on both targets)."""
    want = declared_system_libraries(package)
    have = {"sdist": sdist_system_libraries(sdist), "wheel": system_libraries(wheel)}
    wrong = [f"its {form} says {libs}" for form, libs in have.items() if libs != want]
    if wrong:
        raise TaskError(
            f"{package.rel} declares system libraries {want} but {' and '.join(wrong)} "
            "(Requires-External: see vhost_user_core_build)"
        )


def soname_patterns(library: str) -> list[str]:
    """`libpipewire-0.3` -> `libpipewire-0.3.so*`: what auditwheel must not graft, from
    the -l flags pkg-config gives (so `alsa` becomes `libasound.so*`)."""
    flags = output(["pkg-config", "--libs-only-l", library])
    if flags is None:
        raise TaskError(f"pkg-config knows no {library!r} (install its -dev package)")
    return [f"lib{flag[2:]}.so*" for flag in flags.split() if flag.startswith("-l")]


def repair(py: Path, wheel: Path, out: Path) -> Path:
    """auditwheel: the lowest manylinux tag the wheel qualifies for, system libraries
    left to the system."""
    excludes = [p for lib in system_libraries(wheel) for p in soname_patterns(lib)]
    with tempfile.TemporaryDirectory() as tmp:
        cmd: list[str | Path] = [py.parent / "auditwheel", "repair", "-w", tmp, wheel]
        for pattern in excludes:
            cmd += ["--exclude", pattern]
        run(cmd, env=clean_env())
        (repaired,) = Path(tmp).glob("*.whl")
        if "manylinux" not in repaired.name:
            raise TaskError(f"auditwheel gave {repaired.name} no manylinux tag")
        return Path(shutil.move(repaired, out / repaired.name))


def build(py: Path, out: Path = DIST, packages: list[Package] | None = None) -> list[Built]:
    """sdist and wheel of every package (`discover()`: dependency order) into `out`,
    which is emptied first so nothing stale is installed from it."""
    packages = discover() if packages is None else packages
    house = wheelhouse(py, third_party(packages))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    built = []
    for package in packages:
        say(f"dist {package.name}: sdist, then its wheel built from it in isolation")
        source = sdist(py, package, out)
        wheel = wheel_from_sdist(py, source, out, house)
        check_metadata(package, source, wheel)
        built.append(Built(package, source, wheel))
    return built
