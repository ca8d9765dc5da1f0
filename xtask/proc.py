"""Progress lines and child processes, shared by every task."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from xtask.workspace import VENV

StrPath = str | Path


class TaskError(Exception):
    """A task cannot go on; the message says why (printed without a traceback)."""


def say(message: str) -> None:
    """One short progress line; flushed so it interleaves with children's output."""
    print(f"xtask: {message}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> int:
    """Run a command with inherited stdio; a failure becomes a TaskError naming it."""
    argv = [str(arg) for arg in cmd]
    try:
        rc = subprocess.call(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise TaskError(f"{argv[0]}: command not found") from exc
    if check and rc != 0:
        raise TaskError(f"`{shlex.join(argv)}` failed with exit status {rc}")
    return rc


def output(cmd: Sequence[StrPath], *, cwd: StrPath | None = None) -> str | None:
    """stdout of a command, or None if it could not run or failed (used for probes)."""
    try:
        result = subprocess.run(
            [str(arg) for arg in cmd],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for tools run from the venv: its bin/ first on PATH, and no stray
    settings that change generated output (VHOST_LOG feeds a --log-level default)."""
    env = {k: v for k, v in os.environ.items() if k not in {"VHOST_LOG", "PYTHONHOME"}}
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", os.defpath)])
    env.update(overrides)
    return env
