"""The workspace's packages, found generically so a new device needs no xtask change.

A package is any directory with a pyproject.toml directly under packages/ or staging/, the
template/ directory itself, or a directory directly under template/.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
GROUPS = ("packages", "staging")
TEMPLATE = ROOT / "template"
#: xtask's own tests (the man page renderer's), run by `xtask test` with the packages'.
XTASK_TESTS = ROOT / "xtask" / "tests"
FUZZ_TESTS = ROOT / "fuzz" / "tests"
DEVICE_PREFIX = "vhost-device-"
TEST_EXTRAS = ("test", "tests", "testing")

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name, for comparing requirement names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot read a project name from requirement {requirement!r}")
    return canonical(match[1])


@dataclass(frozen=True)
class Package:
    path: Path

    @cached_property
    def pyproject(self) -> dict[str, Any]:
        with (self.path / "pyproject.toml").open("rb") as f:
            return tomllib.load(f)

    @property
    def project(self) -> dict[str, Any]:
        project = self.pyproject.get("project")
        if not isinstance(project, dict) or "name" not in project:
            raise ValueError(f"{self.path / 'pyproject.toml'} has no [project] name")
        return project

    @property
    def name(self) -> str:
        """The distribution name, e.g. vhost-device-rng."""
        return str(self.project["name"])

    @property
    def version(self) -> str:
        return str(self.project.get("version", "0"))

    @property
    def module(self) -> str:
        """The import name, e.g. vhost_device_rng."""
        return canonical(self.name).replace("-", "_")

    @property
    def short(self) -> str:
        """The device name used on the xtask command line: rng for vhost-device-rng."""
        return self.name.removeprefix(DEVICE_PREFIX)

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def tests(self) -> Path:
        return self.path / "tests"

    @property
    def bench(self) -> Path:
        return self.path / "bench"

    @property
    def readme(self) -> Path:
        return self.path / "README.md"

    @property
    def tool(self) -> dict[str, Any]:
        """Our own `[tool.vhost-device]` table: parser = "module:factory", man-date,
        debian = [Debian packages to build, run and test it], demo = {...}, nix = {...}."""
        table = self.pyproject.get("tool", {}).get("vhost-device", {})
        return table if isinstance(table, dict) else {}

    @property
    def parser(self) -> str | None:
        spec = self.tool.get("parser")
        return str(spec) if spec else None

    @property
    def demo(self) -> dict[str, Any] | None:
        """`[tool.vhost-device.demo]`: how `xtask demo` boots a guest with it (see demo.py)."""
        table = self.tool.get("demo")
        return table if isinstance(table, dict) else None

    @property
    def manpage(self) -> Path:
        return self.path / "man" / f"{self.name}.1"

    @property
    def dependencies(self) -> list[str]:
        return [str(d) for d in self.project.get("dependencies", [])]

    @property
    def test_requirements(self) -> list[str]:
        extras = self.project.get("optional-dependencies", {})
        return [str(r) for extra in TEST_EXTRAS for r in extras.get(extra, [])]

    @property
    def build_requirements(self) -> list[str]:
        return [str(r) for r in self.pyproject.get("build-system", {}).get("requires", [])]


def _candidates() -> list[Path]:
    dirs: list[Path] = []
    for group in GROUPS:
        dirs += sorted(p.parent for p in (ROOT / group).glob("*/pyproject.toml"))
    if (TEMPLATE / "pyproject.toml").is_file():
        dirs.append(TEMPLATE)
    dirs += sorted(p.parent for p in TEMPLATE.glob("*/pyproject.toml"))
    return dirs


def discover() -> list[Package]:
    """Every workspace package, each after the workspace packages it needs to build or
    run (vhost-user-core first)."""
    packages = [Package(path) for path in _candidates()]
    names = {canonical(p.name) for p in packages}

    def local_deps(package: Package) -> int:
        needs = package.dependencies + package.build_requirements
        return len({requirement_name(d) for d in needs} & names)

    return sorted(packages, key=local_deps)  # sort is stable: path order otherwise


def find(name: str, packages: list[Package]) -> Package:
    """A package by device name (rng), distribution name or directory name."""
    for package in packages:
        if name in (package.short, package.name, package.path.name):
            return package
    known = ", ".join(p.short for p in packages)
    raise LookupError(f"no package called {name!r} (known: {known})")


def external(requirements: list[str], packages: list[Package]) -> list[str]:
    """Requirements that PyPI must provide (the workspace's own packages taken out)."""
    names = {canonical(p.name) for p in packages}
    return [r for r in requirements if requirement_name(r) not in names]
