"""`xtask new <name>`: a new device package from template/, complete and passing at once.

The template is copied with every name changed (`vhost-device-template`,
`vhost_device_template`, test files `test_template_*.py`, which must be unique across
the workspace), its README cut down to the device's own (flags and examples), and with
`--cython` the overlay in template/cython/ laid on top and declared in the pyproject.
Nothing outside the new directory is written: xtask, the flake, mypy, ruff and pytest
find packages under packages/ and staging/ themselves. Stdlib only; the caller renders
the man page once the package is installed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from xtask.proc import TaskError
from xtask.workspace import DEVICE_PREFIX, ROOT, TEMPLATE, Package, canonical

TEMPLATE_DIST = "vhost-device-template"
TEMPLATE_MODULE = "vhost_device_template"
CYTHON = TEMPLATE / "cython"
#: Not copied from template/: the man page is rendered for the new package, the README
#: written for it, the overlay is --cython's. From the overlay: its README.
_SKIP = {TEMPLATE: {"man", "cython", "README.md"}, CYTHON: {"README.md"}}
_INIT_DOC = '"""A loopback device: the smallest complete vhost-user backend, meant to be copied."""'
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")
_RESERVED = {"template", "core", "user-core"}

CYTHON_BUILD_REQUIRES = ["Cython>=3.0", "setuptools>=68", "vhost-user-core>=0.1,<0.2"]


@dataclass(frozen=True)
class NewDevice:
    """The names of a device to be: `short` on the xtask command line (foo-bar), the
    distribution (vhost-device-foo-bar), the import name (vhost_device_foo_bar)."""

    short: str
    staging: bool = False

    @classmethod
    def parse(cls, name: str, *, staging: bool = False) -> NewDevice:
        short = name.removeprefix(DEVICE_PREFIX)
        if not _NAME.match(short) or short in _RESERVED:
            raise TaskError(
                f"{name!r}: a device name is lower-case letters, digits and single "
                "hyphens, starting with a letter (and not template or core)"
            )
        return cls(short, staging)

    @property
    def dist(self) -> str:
        return DEVICE_PREFIX + self.short

    @property
    def module(self) -> str:
        return self.dist.replace("-", "_")

    @property
    def stem(self) -> str:
        """What test file names carry: test_<stem>_cli.py."""
        return self.short.replace("-", "_")

    @property
    def path(self) -> Path:
        return ROOT / ("staging" if self.staging else "packages") / self.dist

    def rename(self, text: str) -> str:
        text = text.replace(TEMPLATE_DIST, self.dist).replace(TEMPLATE_MODULE, self.module)
        return text.replace("test_template_", f"test_{self.stem}_")


def _template_files(root: Path) -> list[Path]:
    """The template's own files, relative to `root`, without build products."""
    skip_dirs = {"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache"}
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or skip_dirs & set(rel.parts) or rel.suffix in {".so", ".c"}:
            continue
        if rel.parts[0] in _SKIP[root]:
            continue
        found.append(rel)
    return found


def _copy_tree(device: NewDevice, source: Path) -> None:
    for rel in _template_files(source):
        target = device.path / device.rename(rel.as_posix())
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix in {".py", ".pyi", ".pyx", ".toml", ".md", ".typed"}:
            target.write_text(device.rename((source / rel).read_text()))
        else:
            shutil.copy2(source / rel, target)


def _section(markdown: str, heading: str) -> str:
    """A `## heading` section of the template's README, up to the next one."""
    match = re.search(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", markdown, re.S | re.M)
    if match is None:
        raise TaskError(f"template/README.md has no '## {heading}' section")
    return match[0].rstrip() + "\n"


def _readme(device: NewDevice, template_readme: str) -> str:
    where = (
        "\nIn `staging/`: see [staging/README.md](../README.md) for what that means and how"
        " a device graduates.\n"
        if device.staging
        else ""
    )
    return (
        f"# {device.dist}\n\n"
        f"vhost-user {device.short} device backend. Made by `python3 xtask new` from the\n"
        "template: so far a loopback whose host sink (`--sink`) stands for the hardware;\n"
        "[the template's README](../../template/README.md) walks through each file.\n"
        f"{where}\n"
        + device.rename(_section(template_readme, "Install"))
        + "\n"
        + device.rename(_section(template_readme, "Flags"))
        + "\n"
        + device.rename(_section(template_readme, "Examples"))
    )


def _pyproject(device: NewDevice, text: str, *, cython: bool) -> str:
    """The template's pyproject for the new device (already renamed)."""
    text, count = re.subn(
        r'^description = ".*"$',
        f'description = "vhost-user {device.short} device backend"',
        text,
        count=1,
        flags=re.M,
    )
    if count != 1:
        raise TaskError("template/pyproject.toml has no description line")
    if not cython:
        return text
    requires = '["hatchling>=1.25"]'
    packages = f'packages = ["src/{device.module}"]\n'
    if f"requires = {requires}" not in text or packages not in text:
        raise TaskError("template/pyproject.toml changed: update xtask/new.py's --cython")
    with_cython = ", ".join(f'"{r}"' for r in ["hatchling>=1.25", *CYTHON_BUILD_REQUIRES])
    text = text.replace(f"requires = {requires}", f"requires = [{with_cython}]", 1)
    return text.replace(
        packages,
        packages
        + 'exclude = ["*.c", "*.so"]\n\n'
        + "[tool.hatch.build.targets.wheel.hooks.custom]\n"
        + "# Compiled by hatch_build.py (vhost-user-core's hook); add modules here, with\n"
        + '# { name = "_x", pkg-config = ["libfoo"] } for one that links a C library.\n'
        + 'path = "hatch_build.py"\n'
        + f'package = "src/{device.module}"\n'
        + 'extensions = ["_native"]\n',
        1,
    )


def create(device: NewDevice, packages: list[Package], *, cython: bool = False) -> Path:
    """Write the new package; returns its directory."""
    if device.path.exists():
        raise TaskError(f"{device.path.relative_to(ROOT)} already exists")
    taken = {canonical(p.name) for p in packages}
    if canonical(device.dist) in taken or canonical(device.module) in taken:
        raise TaskError(f"a workspace package is already called {device.dist}")
    try:
        _copy_tree(device, TEMPLATE)
        if cython:
            _copy_tree(device, CYTHON)
        init = device.path / "src" / device.module / "__init__.py"
        if _INIT_DOC not in init.read_text():
            raise TaskError("template's __init__.py docstring changed: update xtask/new.py")
        init.write_text(
            init.read_text().replace(_INIT_DOC, f'"""vhost-user {device.short} device backend."""')
        )
        (device.path / "README.md").write_text(
            _readme(device, (TEMPLATE / "README.md").read_text())
        )
        pyproject = device.path / "pyproject.toml"
        pyproject.write_text(_pyproject(device, pyproject.read_text(), cython=cython))
    except BaseException:
        shutil.rmtree(device.path, ignore_errors=True)
        raise
    return device.path
