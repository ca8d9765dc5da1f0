"""Run one fuzz target under atheris: `python fuzz/run.py TARGET [libFuzzer args...]`.

The target is fuzz/targets/TARGET.py; its `one_input(data)` is called for every input.
Our packages are imported inside atheris's import hook, so their Python code reports
coverage to libFuzzer; in the sanitizer build (see the core README) the Cython modules
report their own edges too, and ASan aborts on a bad access. Every other argument goes
to libFuzzer (corpus directories, -runs=N, -max_total_time=S, a crash file to replay).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import shlex
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
#: Packages whose Python code atheris instruments (with their submodules): the core and
#: every installed device package, the code under test. Not the driver side every
#: target plays: the targets and their rig (fuzz/), the core's frontend. Instrumented,
#: their edges only told libFuzzer about the harness, at a sixth of the I/O targets' time.
INSTRUMENT = [
    "vhost_user_core",
    *(m.name for m in pkgutil.iter_modules() if m.name.startswith("vhost_device_")),
]
EXCLUDE = ["vhost_user_core.frontend", "vhost_user_core.testing"]
#: Targets instrumented themselves: their model mirrors the branches of Cython code,
#: which reports no edges in the normal build, so without it libFuzzer saw no new
#: coverage at all and kept a one-byte corpus.
SELF_INSTRUMENTED = {"virtqueue"}
#: Per-input time limit (seconds): an input that takes longer is a hang, reported as one.
TIMEOUT = "10"


def targets() -> list[str]:
    return sorted(p.stem for p in (HERE / "targets").glob("*.py") if p.stem != "__init__")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in targets():
        print(f"usage: {argv[0]} TARGET [libFuzzer args]; targets: {' '.join(targets())}")
        return 2
    name = argv[1]
    sys.path.insert(0, str(HERE))
    # The devices log every refused request; at fuzzing rates that is all the run does.
    logging.disable(logging.CRITICAL)
    include = [*INSTRUMENT, f"targets.{name}"] if name in SELF_INSTRUMENTED else INSTRUMENT
    with atheris.instrument_imports(include=include, exclude=EXCLUDE):
        target = importlib.import_module(f"targets.{name}")
    # libFuzzer re-runs argv[0] through the shell for -merge, -fork and friends: make it
    # the whole command (this interpreter, this script, the target).
    args = [shlex.join([sys.executable, str(Path(__file__).resolve()), name]), *argv[2:]]
    if not any(a.startswith("-timeout=") for a in args):
        args.insert(1, f"-timeout={TIMEOUT}")
    atheris.Setup(args, target.one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
