"""`xtask new`: what it writes (the build, tests and lint of the result are run by hand:
`python3 xtask new demo-dev && python3 xtask test`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from xtask import new_device
from xtask.new_device import NewDevice, create
from xtask.proc import TaskError
from xtask.workspace import Package, discover


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """New packages go under tmp_path instead of the repository."""
    monkeypatch.setattr(new_device, "ROOT", tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", ["Foo", "foo_bar", "foo--bar", "-foo", "1wire", "template", ""])
def test_bad_names(name: str) -> None:
    with pytest.raises(TaskError, match="device name"):
        NewDevice.parse(name)


def test_names() -> None:
    device = NewDevice.parse("vhost-device-foo-bar")
    assert (device.short, device.dist, device.module, device.stem) == (
        "foo-bar",
        "vhost-device-foo-bar",
        "vhost_device_foo_bar",
        "foo_bar",
    )


def _texts(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): p.read_text() for p in path.rglob("*") if p.is_file()}


def test_a_plain_device(root: Path) -> None:
    path = create(NewDevice.parse("foo-bar"), discover())
    assert path == root / "packages" / "vhost-device-foo-bar"
    files = _texts(path)
    assert sorted(files) == [
        "README.md",
        "pyproject.toml",
        "src/vhost_device_foo_bar/__init__.py",
        "src/vhost_device_foo_bar/args.py",
        "src/vhost_device_foo_bar/device.py",
        "src/vhost_device_foo_bar/errors.py",
        "src/vhost_device_foo_bar/host.py",
        "src/vhost_device_foo_bar/main.py",
        "src/vhost_device_foo_bar/py.typed",
        "tests/test_foo_bar_cli.py",
        "tests/test_foo_bar_device.py",
        "tests/test_foo_bar_smoke.py",
    ]
    for name, text in files.items():
        assert "vhost_device_template" not in text and "vhost-device-template" not in text, name
    package = Package(path)
    assert package.name == "vhost-device-foo-bar"
    assert package.parser == "vhost_device_foo_bar.args:build_parser"
    assert package.project["description"] == "vhost-user foo-bar device backend"
    assert not any("Cython" in r for r in package.build_requirements)
    assert "## Examples\n" in files["README.md"] and "staging" not in files["README.md"]
    assert "vhost-device-foo-bar --socket-path" in files["README.md"]
    assert "pip install --find-links dist vhost-device-foo-bar" in files["README.md"]


def test_a_staging_device_with_cython(root: Path) -> None:
    path = create(NewDevice.parse("baz", staging=True), discover(), cython=True)
    assert path == root / "staging" / "vhost-device-baz"
    files = _texts(path)
    for name in (
        "hatch_build.py",
        "src/vhost_device_baz/_native.pyx",
        "src/vhost_device_baz/_native.pyi",
        "tests/test_baz_native.py",
    ):
        assert name in files
    assert "from vhost_device_baz import _native" in files["tests/test_baz_native.py"]
    pyproject = tomllib.loads(files["pyproject.toml"])
    assert "vhost-user-core>=0.1,<0.2" in pyproject["build-system"]["requires"]
    hook = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]
    assert hook == {
        "path": "hatch_build.py",
        "package": "src/vhost_device_baz",
        "extensions": ["_native"],
    }
    assert "staging/README.md" in files["README.md"]


def test_taken_names_and_directories_are_refused(root: Path) -> None:
    with pytest.raises(TaskError, match="already called"):
        create(NewDevice.parse("rng"), discover())
    create(NewDevice.parse("qux"), [])
    with pytest.raises(TaskError, match="already exists"):
        create(NewDevice.parse("qux"), [])
