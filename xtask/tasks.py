"""The tasks themselves; each returns a process exit status."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from xtask import dist as distribution
from xtask import environment, new_device, system
from xtask.proc import TaskError, clean_env, run, say
from xtask.workspace import FUZZ_TESTS, ROOT, XTASK_TESTS, Package, discover, find

PYTEST_NO_TESTS = 5


def bootstrap(*, force: bool = False) -> Path:
    """System packages, the venv, tools, and every workspace package; returns the venv's
    python."""
    packages = discover()
    system.ensure(packages)
    py = environment.ensure_venv()
    environment.install_tools(py, packages)
    environment.install_workspace(py, packages, force=force)
    return py


def build_guest_image(py: Path, args: list[str] | None = None) -> None:
    say("guest image (kernel + initramfs)")
    run([py, "-m", "vhost_user_core.testing.guest_image", *(args or [])], cwd=ROOT, env=clean_env())


def _duplicate_test_modules(dirs: list[Path]) -> list[str]:
    """pytest's default import mode puts every test dir on sys.path, so test modules
    and the helpers they import are found by bare name: those must be unique across
    packages. (conftest.py is pytest's own business; never import from it.)"""
    seen: defaultdict[str, list[str]] = defaultdict(list)
    for directory in dirs:
        for path in sorted(directory.rglob("*.py")):
            if path.name != "conftest.py":
                seen[path.name].append(path.relative_to(ROOT).as_posix())
    return [f"{name}: {', '.join(paths)}" for name, paths in seen.items() if len(paths) > 1]


def _user_selected_paths(args: list[str]) -> list[str] | None:
    """If the extra arguments name test files or dirs, run only those (made absolute,
    since pytest runs from the repository root)."""
    selected = False
    out: list[str] = []
    for arg in args:
        path = arg.split("::", 1)[0]
        if not arg.startswith("-") and path and Path(path).exists():
            selected = True
            out.append(str(Path(path).resolve()) + arg[len(path) :])
        else:
            out.append(arg)
    return out if selected else None


def test(args: list[str]) -> int:
    py = bootstrap()
    build_guest_image(py)
    dirs = [p.tests for p in discover() if p.tests.is_dir()] + [XTASK_TESTS, FUZZ_TESTS]
    selected = _user_selected_paths(args)
    if selected is None:
        duplicates = _duplicate_test_modules(dirs)
        if duplicates:
            raise TaskError(
                "test modules must have unique file names across packages "
                "(pytest imports them by basename): " + "; ".join(duplicates)
            )
        argv = [*(d.relative_to(ROOT).as_posix() for d in dirs), *args]
    else:
        argv = selected
    say(f"pytest {' '.join(argv)}")
    rc = run([py, "-m", "pytest", *argv], cwd=ROOT, env=clean_env(), check=False)
    if rc == PYTEST_NO_TESTS:
        say("pytest ran no tests: that is a failure")
        return 1
    if selected is None:  # the whole suite: man pages, style and types are part of it
        checks = [_manpages(py, check=True), _lint(py, [])]
        rc = rc or max(checks)
    return rc


def guest_image(args: list[str]) -> int:
    build_guest_image(bootstrap(), args)
    return 0


def demo(device: str) -> int:
    package = find(device, discover())
    if package.demo is None:
        with_demo = ", ".join(p.short for p in discover() if p.demo is not None)
        raise TaskError(f"{package.rel} declares no [tool.vhost-device.demo] (try: {with_demo})")
    py = bootstrap()
    build_guest_image(py)
    return run([py, "-m", "xtask.demo", device], cwd=ROOT, env=clean_env(), check=False)


def manpages(*, check: bool) -> int:
    """Render (or check) man/<distribution>.1 of every package with `[tool.vhost-device]
    parser`; `xtask test` runs the check."""
    return _manpages(bootstrap(), check=check)


def _manpages(py: Path, *, check: bool, packages: list[Package] | None = None) -> int:
    failed = 0
    for package in discover() if packages is None else packages:
        if package.parser is None:
            continue
        # The renderer is xtask's own (stdlib-only) module, run with the venv's python
        # because it imports the device's parser.
        cmd: list[str | Path] = [py, "-m", "xtask.manpage", "--package", package.path]
        if check:
            cmd.append("--check")
        # bootstrap() has just reinstalled every changed package, so the installed
        # parser is the one in the sources (and its compiled modules are built).
        rel = package.manpage.relative_to(ROOT)
        rc = run(cmd, cwd=ROOT, env=clean_env(), check=False)
        if rc != 0:
            failed += 1
            say(f"{rel}: {'out of date (run `python3 xtask manpages`)' if check else 'failed'}")
        else:
            say(f"{rel}: {'up to date' if check else 'written'}")
    return 1 if failed else 0


def new(name: str, *, staging: bool, cython: bool) -> int:
    """A new device package from template/, installed, its man page rendered."""
    device = new_device.NewDevice.parse(name, staging=staging)
    path = new_device.create(device, discover(), cython=cython)
    rel = path.relative_to(ROOT).as_posix()
    say(f"{rel}: created from template/" + (" with a Cython module" if cython else ""))
    py = bootstrap()  # builds and installs it: the man page is rendered from its parser
    rc = _manpages(py, check=False, packages=[Package(path)])
    if rc == 0:
        say(f"next: `python3 xtask test {rel}/tests`, then make it yours (template/README.md)")
    return rc


def bench(device: str | None, args: list[str]) -> int:
    py = bootstrap()
    packages = discover()
    chosen: list[Package] = [find(device, packages)] if device else packages
    scripts = [s for p in chosen for s in sorted(p.bench.glob("*.py"))]
    if not scripts:
        raise TaskError(f"no bench/*.py in {', '.join(p.rel for p in chosen)}")
    status = 0
    for script in scripts:
        say(f"bench {script.relative_to(ROOT)}")
        rc = run([py, script, *args], cwd=script.parent.parent, env=clean_env(), check=False)
        status = status or rc
    return status


def lint(args: list[str]) -> int:
    """ruff (lint and format) and mypy over the workspace, with the root pyproject's
    settings. `xtask test` runs this too."""
    return _lint(bootstrap(), args)


def _lint(py: Path, args: list[str]) -> int:
    bindir = py.parent
    say("ruff check, ruff format --check, mypy")
    status = run([bindir / "ruff", "check", *args, "."], cwd=ROOT, check=False)
    status |= run([bindir / "ruff", "format", "--check", "."], cwd=ROOT, check=False)
    status |= run([bindir / "mypy"], cwd=ROOT, env=clean_env(), check=False)
    return 1 if status else 0


def devices(args: list[str]) -> int:
    """The workspace's packages as a Markdown table, read from their pyproject.toml (so
    no README keeps a list that a new or deleted device would leave stale)."""
    if args:
        raise TaskError("devices takes no arguments")
    print("| package | where | description |\n|---|---|---|")
    for package in discover():
        print(f"| {package.name} | {package.rel} | {package.project.get('description', '')} |")
    return 0


def dist(out: Path | None) -> int:
    """sdists and wheels of every package (xtask/dist.py), into dist/ or `out`."""
    built = distribution.build(bootstrap(), out or distribution.DIST)
    for item in built:
        say(f"{item.sdist.name}, {item.wheel.name}")
    return 0
