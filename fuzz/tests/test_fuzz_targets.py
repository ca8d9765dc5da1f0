"""Every fuzz target, run by libFuzzer for a bounded number of inputs from its committed
seed corpus (the long runs are by hand: `python3 xtask fuzz`, see the core README).

A target fails on an exception outside its package's error tree, a broken invariant,
or an input over the per-input time limit; libFuzzer then exits non-zero and names the
input it wrote to the temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent
TARGETS = sorted(p.stem for p in (FUZZ / "targets").glob("*.py") if p.stem != "__init__")
#: Inputs per target in the test suite: seconds each, the whole step well under a minute.
RUNS = 3000


def test_every_target_has_seeds() -> None:
    for target in TARGETS:
        seeds = FUZZ / "corpus" / target
        assert seeds.is_dir() and any(seeds.iterdir()), f"fuzz/corpus/{target} has no seeds"


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cmd = [
        sys.executable,
        str(FUZZ / "run.py"),
        target,
        f"-runs={RUNS}",
        "-seed=19",  # the same mutations every run: a regression gate, not exploration
        "-timeout=10",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
        str(FUZZ / "corpus" / target),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, f"{target} failed:\n{tail}"
    # libFuzzer may count one input past -runs (seen as "Done 3001 runs" in CI): the gate
    # is that the whole budget ran, not the exact count.
    done = re.search(r"^Done (\d+) runs", proc.stderr, re.MULTILINE)
    assert done and int(done.group(1)) >= RUNS, tail
