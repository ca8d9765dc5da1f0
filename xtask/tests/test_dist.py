"""`xtask dist`, then every device installed from its output by pip alone, as a user would.

The distributions are built once for the module (offline but for the wheelhouse's
first fetch); each device is then installed into its own clean venv outside the
checkout, once from its wheel and once from its sdist (which pip builds in its isolated
environment, vhost-user-core taken from the same --find-links), and must start, ship
its man page and answer one request through the core's frontend (its
tests/test_<name>_smoke.py, run as a script by that venv's python). Measured on the
shared 2-core machine at load 6: 150 s to build, 150 s for the eight installs, most of
both the sdists' Cython compiles.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xtask import dist, environment
from xtask.workspace import DEVICE_PREFIX, ROOT, Package, discover

DEVICES = [p for p in discover() if p.name.startswith(DEVICE_PREFIX)]
#: Only our find-links, whatever the machine's pip configuration adds.
PIP_ENV = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
PIP_ENV.pop("VIRTUAL_ENV", None)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dist.Built]:
    out = tmp_path_factory.mktemp("dist")
    return {b.package.name: b for b in dist.build(environment.python(), out)}


@pytest.fixture(scope="module")
def house() -> Path:
    return dist.wheelhouse(environment.python(), dist.third_party(discover()))


def test_every_package_has_an_sdist_and_a_wheel(built: dict[str, dist.Built]) -> None:
    assert sorted(built) == sorted(p.name for p in discover())
    out = {path.name for b in built.values() for path in (b.sdist, b.wheel)}
    assert out == {path.name for path in next(iter(built.values())).sdist.parent.iterdir()}
    for item in built.values():
        compiled = any(n.endswith(".so") for n in zipfile.ZipFile(item.wheel).namelist())
        assert ("manylinux" in item.wheel.name) == compiled, item.wheel.name
        assert compiled or item.wheel.name.endswith("-py3-none-any.whl")


def test_the_core_wheel_ships_what_device_builds_need(built: dict[str, dist.Built]) -> None:
    names = set(zipfile.ZipFile(built["vhost-user-core"].wheel).namelist())
    for module in ("memory", "virtqueue", "fastpath"):
        assert {f"vhost_user_core/{module}.pxd", f"vhost_user_core/{module}.pyi"} <= names
    assert "vhost_user_core_build/__init__.py" in names


def test_system_libraries_are_declared_and_left_to_the_system(
    built: dict[str, dist.Built],
) -> None:
    sound = built["vhost-device-sound"]
    assert dist.system_libraries(sound.wheel) == ["libpipewire-0.3", "alsa"]
    assert not [n for n in zipfile.ZipFile(sound.wheel).namelist() if "libpipewire" in n]
    assert dist.sdist_system_libraries(sound.sdist) == ["libpipewire-0.3", "alsa"]
    for name in ("vhost-user-core", "vhost-device-rng"):
        assert dist.system_libraries(built[name].wheel) == []


@pytest.mark.parametrize("form", ["wheel", "sdist"])
@pytest.mark.parametrize("package", DEVICES, ids=lambda p: p.short)
def test_installs_from_dist_alone_and_serves(
    package: Package, form: str, built: dict[str, dist.Built], house: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    assert not venv.is_relative_to(ROOT)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=PIP_ENV)
    py, script = venv / "bin" / "python", venv / "bin" / package.name
    links: list[str | Path] = [
        "--find-links",
        built[package.name].sdist.parent,
        "--find-links",
        house,
    ]
    only: list[str | Path] = (
        ["--only-binary", ":all:"] if form == "wheel" else ["--no-binary", package.name]
    )
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-index", "--no-cache-dir", *links, *only,
         package.name],
        check=True, env=PIP_ENV, cwd=tmp_path,
    )  # fmt: skip
    kind = "manylinux" if form == "wheel" and "manylinux" in built[package.name].wheel.name else ""
    wheel_tag = next((venv / "lib").glob(f"*/site-packages/{package.module}-*.dist-info/WHEEL"))
    assert kind in wheel_tag.read_text()

    usage = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert usage.stdout.startswith(f"usage: {package.name}")
    page = venv / "share" / "man" / "man1" / f"{package.name}.1"
    assert page.read_bytes() == package.manpage.read_bytes()

    smoke = package.tests / f"test_{package.module.removeprefix('vhost_device_')}_smoke.py"
    assert smoke.is_file(), f"{package.rel}: a device needs tests/{smoke.name} (see template/)"
    work = tmp_path / "smoke"
    work.mkdir()
    subprocess.run([py, "-I", smoke, script, work], check=True, cwd=tmp_path, timeout=120)
