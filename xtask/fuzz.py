"""`xtask fuzz`: run the atheris targets of fuzz/, in the normal venv or in a separate
sanitizer venv whose Cython modules are built with clang for libFuzzer and ASan.

The sanitizer venv (.venv-fuzz) never touches the normal one: it gets its own copies of
the tools, the third-party dependencies and every workspace package, built with
`-fsanitize=address,fuzzer-no-link`, and runs with atheris's ASan+libFuzzer runtime
preloaded (the interpreter itself is not instrumented, so the runtime must come first).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from xtask import environment
from xtask.proc import TaskError, clean_env, output, run, say
from xtask.workspace import ROOT, discover, external

FUZZ = ROOT / "fuzz"
SANITIZER_VENV = ROOT / ".venv-fuzz"
WORK = ROOT / "build" / "fuzz"
#: What the Cython modules are compiled and linked with in the sanitizer venv.
SANITIZER_FLAGS = "-fsanitize=address,fuzzer-no-link -g -O1 -fno-omit-frame-pointer"
#: Python holds on to memory until exit and frees a lot per input: no leak report, a
#: small quarantine (the default 256 MiB makes RSS balloon) and no allocation stacks
#: (the unwinding per malloc costs a factor of five). Set ASAN_OPTIONS to override.
ASAN_OPTIONS = "detect_leaks=0:quarantine_size_mb=8:malloc_context_size=0"
ATHERIS = "atheris>=2.3"


def targets() -> list[str]:
    return sorted(p.stem for p in (FUZZ / "targets").glob("*.py") if p.stem != "__init__")


@dataclass
class Outcome:
    target: str
    status: int
    summary: str


def _venv_env(**overrides: str) -> dict[str, str]:
    """clean_env, but with the sanitizer venv's bin/ first."""
    env = clean_env(VIRTUAL_ENV=str(SANITIZER_VENV))
    env["PATH"] = os.pathsep.join([str(SANITIZER_VENV / "bin"), env["PATH"]])
    env.update(overrides)
    return env


def _runtime(py: Path) -> Path:
    """atheris's ASan + libFuzzer runtime, to preload into the uninstrumented python."""
    site = output([py, "-c", "import atheris; print(atheris.path())"])
    if not site:
        raise TaskError(f"atheris is not importable in {SANITIZER_VENV}")
    return Path(site.strip()) / "asan_with_fuzzer.so"


def _sanitizer_env(py: Path) -> dict[str, str]:
    """How a workspace package is built there. The device packages' build hooks import
    the (instrumented) core, so the build too runs with the runtime preloaded."""
    return _venv_env(
        LD_PRELOAD=str(_runtime(py)),
        ASAN_OPTIONS=ASAN_OPTIONS,
        CC="clang",
        CXX="clang++",
        LDSHARED="clang -shared",
        CFLAGS=SANITIZER_FLAGS,
        LDFLAGS="-fsanitize=address,fuzzer-no-link",
    )


def ensure_sanitizer_venv() -> Path:
    """.venv-fuzz with every workspace package's Cython built for libFuzzer + ASan;
    packages are rebuilt when their files changed (as in the normal venv)."""
    if shutil.which("clang") is None:
        raise TaskError("the sanitizer build needs clang: apt-get install clang")
    py = SANITIZER_VENV / "bin" / "python"
    if not py.exists():
        say(f"creating {SANITIZER_VENV.name} (sanitizer build for fuzzing)")
        run([sys.executable, "-m", "venv", SANITIZER_VENV])
    packages = discover()
    wanted = list(environment.BASE_TOOLS) + [ATHERIS]
    for package in packages:
        wanted += package.build_requirements + package.dependencies
    environment.pip_install(py, *dict.fromkeys(external(wanted, packages)))
    state_file = SANITIZER_VENV / "xtask-installed.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    for package in packages:
        fingerprint = environment.fingerprint(package)
        if state.get(package.name) == fingerprint:
            continue
        say(f"sanitizer build of {package.name}")
        state.pop(package.name, None)
        state_file.write_text(json.dumps(state, indent=1, sort_keys=True))
        pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        pip += ["--no-build-isolation", "--no-deps", "--force-reinstall", str(package.path)]
        run(pip, env=_sanitizer_env(py))
        state[package.name] = fingerprint
        state_file.write_text(json.dumps(state, indent=1, sort_keys=True))
    return py


def _run_env(py: Path, sanitize: bool) -> dict[str, str]:
    if not sanitize:
        return clean_env()
    return _venv_env(
        LD_PRELOAD=str(_runtime(py)), ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", ASAN_OPTIONS)
    )


def run_target(
    py: Path, target: str, runs: int, extra: list[str], *, sanitize: bool = False
) -> Outcome:
    """Fuzz `target` from its committed seeds for `runs` inputs. New inputs go to
    build/fuzz/<target>/corpus, crashes there too (never into the committed corpus)."""
    work = WORK / ("sanitize" if sanitize else "normal") / target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = FUZZ / "corpus" / target
    cmd = [str(py), str(FUZZ / "run.py"), target, f"-runs={runs}", f"-artifact_prefix={work}/"]
    cmd += [*extra, str(corpus)] + ([str(seeds)] if seeds.is_dir() else [])
    say(" ".join(cmd))
    proc = subprocess.run(
        cmd, env=_run_env(py, sanitize), cwd=ROOT, stderr=subprocess.PIPE, text=True, check=False
    )
    log = work / "last-run.log"
    log.write_text(proc.stderr)
    lines = proc.stderr.splitlines()
    done = [line for line in lines if re.match(r"#\d+\s+DONE", line)]
    if proc.returncode == 0 and done:
        summary = done[-1]
    else:
        tail = "\n".join(lines[-25:])
        summary = f"FAILED (exit {proc.returncode}); log: {log}\n{tail}"
    return Outcome(target, proc.returncode, summary)


def main(argv: list[str], py: Path) -> int:
    """`py`: the normal venv's python (atheris comes with vhost-user-core's test extra)."""
    parser = argparse.ArgumentParser(
        prog="xtask fuzz", epilog="Arguments after -- go to libFuzzer (e.g. -max_total_time=60)."
    )
    parser.add_argument("target", nargs="?", choices=targets(), help="default: every target")
    parser.add_argument("--runs", type=int, default=2000, help="inputs per target (default 2000)")
    parser.add_argument(
        "--sanitize",
        action="store_true",
        help="use the clang/ASan/libFuzzer build of the Cython modules (.venv-fuzz)",
    )
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if args.sanitize:
        py = ensure_sanitizer_venv()
    chosen = [args.target] if args.target else targets()
    outcomes = [run_target(py, t, args.runs, extra, sanitize=args.sanitize) for t in chosen]
    for outcome in outcomes:
        say(f"{outcome.target}: {outcome.summary}")
    return 1 if any(o.status for o in outcomes) else 0
