"""flake.nix without Nix (no nixpkgs can be fetched here): what it finds and what it
reads from each pyproject.toml, checked against the workspace.

The flake finds its devices itself (every directory with a pyproject.toml under the
groups it names, minus those it filters out) and reads fields of their pyprojects;
this reads those rules and field paths out of flake.nix's own text, so a flake edit
that reads a new field, or a pyproject that lacks one, fails here, not in a Nix build.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from xtask.workspace import ROOT, TEMPLATE, Package, canonical, discover, requirement_name

#: The flake's code, its comments taken out (they name fields in prose).
FLAKE = re.sub(r"(?m)(^|\s)#.*$", r"\1", (ROOT / "flake.nix").read_text())
_KEY = r'(?:[A-Za-z][\w-]*|"[^"]+")'
_PATH = rf"{_KEY}(?:\.{_KEY})*"


def _groups() -> list[str]:
    return re.findall(r'devicesIn "([\w-]+)"', FLAKE)


def _filtered_out() -> set[str]:
    return set(re.findall(r'builtins\.filter \(dir: dir != "([^"]+)"\)', FLAKE))


def _flake_devices() -> set[str]:
    """The flake's rule, applied to the tree: directories under each group with a
    pyproject.toml, minus those filtered out."""
    found = {
        path.parent.relative_to(ROOT).as_posix()
        for group in _groups()
        for path in (ROOT / group).glob("*/pyproject.toml")
    }
    return found - _filtered_out()


def _reads(prefix: str) -> dict[tuple[str, ...], bool]:
    """Field paths the flake reads after `prefix.` (e.g. project.name), each with
    whether it is required (no `or` default)."""
    reads: dict[tuple[str, ...], bool] = {}
    for path, default in re.findall(rf"(?<![\w./\"]){prefix}\.({_PATH})(\s+or\b)?", FLAKE):
        key = tuple(part.strip('"') for part in re.findall(_KEY, path))
        reads[key] = reads.get(key, False) or not default
    return reads


def _get(table: dict[str, Any], path: tuple[str, ...]) -> object:
    value: object = table
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise KeyError(".".join(path))
        value = value[key]
    return value


def _pyproject(rel: str) -> dict[str, Any]:
    with (ROOT / rel / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_flake_finds_every_device_and_only_those() -> None:
    assert _groups() == ["packages", "staging"]
    assert _filtered_out() == {"packages/vhost-core"}  # the framework, built on its own
    assert _pyproject("packages/vhost-core")["project"]["name"] == "vhost-user-core"
    devices = {p.rel for p in discover() if p.path != TEMPLATE and p.name != "vhost-user-core"}
    assert _flake_devices() == devices


def test_it_reads_fields_every_pyproject_has() -> None:
    project, whole = _reads("project"), _reads("pyproject")
    core, listed = _reads("coreProject"), _reads(r"\(pyprojectOf [\w]+\)")
    assert ("name",) in project and ("build-system", "requires") in whole  # the regexes work
    for rel in sorted(_flake_devices()):
        toml = _pyproject(rel)
        for path, required in (project | listed).items():
            if required:
                _get(toml["project"], path)
        for path, required in whole.items():
            if required:
                _get(toml, path)
    for path, required in core.items():
        if required:
            _get(_pyproject("packages/vhost-core")["project"], path)


def test_what_it_derives_from_them_is_well_formed() -> None:
    """Each device's script is called like it (the app and mainProgram), requirements
    have names (dependencyOf), and [tool.vhost-device.nix] holds nixpkgs attribute
    paths under the keys the flake reads."""
    nix_keys = {key[0] for key in _reads("nix")}
    assert nix_keys == {"build-inputs", "native-build-inputs", "python-packages"}
    names = {canonical(p.name) for p in discover()}
    for rel in sorted(_flake_devices()):
        package = Package(ROOT / rel)
        assert package.name in package.project.get("scripts", {}), rel
        for requirement in package.dependencies + package.build_requirements:
            name = requirement_name(requirement)
            assert name in names or re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name), requirement
        nix = package.tool.get("nix", {})
        assert set(nix) <= nix_keys, rel
        attribute = r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*"
        for key, attrs in nix.items():
            if key == "python-packages":  # PyPI name -> nixpkgs python3Packages name
                assert all(re.fullmatch(attribute, a) for a in attrs.values()), rel
            else:
                assert all(re.fullmatch(attribute, a) for a in attrs), rel


def test_it_has_a_package_and_an_app_per_device() -> None:
    assert "built.devices // built.staging // {" in FLAKE  # packages
    assert re.search(r"apps = forAllSystems[\s\S]*\(built\.devices // built\.staging\)", FLAKE)
    assert 'program = "${drv}/bin/${name}"' in FLAKE


def test_the_flake_names_no_device() -> None:
    """Sanity for the rule above: the flake keeps no device names of its own."""
    for package in discover():
        if package.name != "vhost-user-core":
            assert package.name not in FLAKE and Path(package.rel).name not in FLAKE
