"""xtask.fuzz: which targets it knows, the two venvs' environments, and a real bounded
run of one target through `run_target` (the normal venv; the sanitizer build is by hand)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xtask import fuzz


def test_targets_are_the_modules_of_fuzz_targets() -> None:
    found = sorted(p.stem for p in (fuzz.FUZZ / "targets").glob("*.py") if p.stem != "__init__")
    assert fuzz.targets() == found
    assert {"protocol", "session", "virtqueue"} <= set(fuzz.targets())


def test_sanitizer_environment_uses_its_own_venv_and_clang() -> None:
    env = fuzz._venv_env(CC="clang")
    assert env["PATH"].split(os.pathsep)[0] == str(fuzz.SANITIZER_VENV / "bin")
    assert env["VIRTUAL_ENV"] == str(fuzz.SANITIZER_VENV)
    assert env["CC"] == "clang"


def test_run_target_keeps_new_inputs_out_of_the_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = fuzz.FUZZ / "corpus" / "vsock_connect"
    before = sorted(seeds.iterdir())
    monkeypatch.setattr(fuzz, "WORK", tmp_path)
    outcome = fuzz.run_target(Path(sys.executable), "vsock_connect", 500, ["-seed=1"])
    assert outcome.status == 0, outcome.summary
    assert "DONE" in outcome.summary
    assert sorted(seeds.iterdir()) == before
    assert (tmp_path / "normal" / "vsock_connect" / "last-run.log").is_file()
