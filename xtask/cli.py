"""`python3 xtask <task> [args]`: parse the task name and hand over its arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from xtask import fuzz, tasks
from xtask.proc import TaskError

USAGE = """\
usage: python3 xtask <task> [args...]

tasks:
  bootstrap [--reinstall]
                      system packages, .venv, tools and every workspace package
  test [pytest args]  bootstrap, build the guest image, run every package's tests
                      (and xtask's); with no args also manpages --check and lint
  new <name> [--staging] [--cython]
                      a new device package from template/, passing at once
  devices             list the workspace's packages (from their pyproject.toml)
  dist [--out DIR]    an sdist and a (manylinux) wheel of every package into dist/
  demo [device]       boot a QEMU guest that uses the device (default: rng)
  guest-image [args]  build the guest kernel + initramfs
  manpages [--check]  render (or check) man/<package>.1 from the argparse parsers
  bench [device] [args]
                      run packages/<device>/bench/*.py with the venv's python
  lint [ruff args]    ruff check, ruff format --check and mypy (test runs them too)
  fuzz [target] [--runs N] [--sanitize] [-- libFuzzer args]
                      run the atheris targets of fuzz/ from their seed corpora
"""


def _bootstrap(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xtask bootstrap")
    parser.add_argument(
        "--reinstall", action="store_true", help="rebuild every workspace package even if unchanged"
    )
    args = parser.parse_args(argv)
    tasks.bootstrap(force=args.reinstall)
    return 0


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xtask demo")
    parser.add_argument("device", nargs="?", default="rng")
    return tasks.demo(parser.parse_args(argv).device)


def _new(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xtask new", description="A new device package.")
    parser.add_argument("name", help="the device name, e.g. foo for vhost-device-foo")
    parser.add_argument("--staging", action="store_true", help="in staging/, not packages/")
    parser.add_argument("--cython", action="store_true", help="with a Cython module")
    args = parser.parse_args(argv)
    return tasks.new(args.name, staging=args.staging, cython=args.cython)


def _dist(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xtask dist", description="sdists and wheels.")
    parser.add_argument("--out", type=Path, default=None, help="instead of dist/")
    return tasks.dist(parser.parse_args(argv).out)


def _manpages(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xtask manpages")
    parser.add_argument("--check", action="store_true", help="fail if a page is out of date")
    return tasks.manpages(check=parser.parse_args(argv).check)


def _bench(argv: list[str]) -> int:
    device = argv[0] if argv and not argv[0].startswith("-") else None
    return tasks.bench(device, argv[1:] if device else argv)


TASKS: dict[str, Callable[[list[str]], int]] = {
    "bootstrap": _bootstrap,
    "test": tasks.test,
    "new": _new,
    "devices": tasks.devices,
    "dist": _dist,
    "demo": _demo,
    "guest-image": tasks.guest_image,
    "manpages": _manpages,
    "bench": _bench,
    "lint": tasks.lint,
    "fuzz": lambda argv: fuzz.main(argv, tasks.bootstrap()),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    task = TASKS.get(args[0])
    if task is None:
        print(f"xtask: unknown task {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    try:
        return task(args[1:])
    except (TaskError, LookupError) as exc:
        print(f"xtask: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
