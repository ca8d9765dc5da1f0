"""The guest side of the sound tests: build guest/snd_test.c and read what it prints.

The test guest is a busybox initramfs with no alsa-lib and no aplay, so the sound tests
copy in `snd-test`, a small static C program that drives the guest's ALSA devices
through raw kernel ioctls. Pass ``extra_files={"snd-test": snd_test_binary()}`` to
`Guest.run` (the harness puts extra files at the root of the initramfs) and run it as
``/snd-test play 2`` and so on from the guest script; then `parse_reports` on the
console text gives one `SndReport` per invocation.

The binary is compiled on the host with the system gcc (static, so it needs nothing
from the guest) by the core's `vhost_user_core.testing.guest_program`, which caches it
keyed by a hash of the preprocessed source (so header changes count too), the compiler
and the flags.
"""

from __future__ import annotations

import functools
import logging
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from vhost_user_core.testing import guest_program

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent.parent / "guest" / "snd_test.c"
#: Where `Guest.run(extra_files={GUEST_NAME: ...})` puts the program in the guest.
GUEST_NAME = "snd-test"
GUEST_PATH = "/" + GUEST_NAME
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")
LIBS = ("-lm",)
#: Debian packages the build needs: <sound/asound.h> comes from linux-libc-dev.
DEBIAN_PACKAGES = guest_program.DEBIAN_PACKAGES

_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")


def cache_dir() -> Path:
    """Where the core's builder caches guest programs."""
    return guest_program.default_cache_dir()


def cache_key(cc: str | None = None, source: Path = SOURCE) -> str:
    """Hash of what determines the binary (the core's: preprocessed source, compiler
    and flags)."""
    return guest_program.cache_key(source, cflags=CFLAGS, libs=LIBS, cc=cc)


def compile_snd_test(output: Path, *, cc: str | None = None, werror: bool = False) -> str:
    """Compile snd_test.c to `output`; returns the compiler's diagnostics (warnings)."""
    flags = CFLAGS + (("-Werror",) if werror else ())
    return guest_program.compile_program(SOURCE, output, cflags=flags, libs=LIBS, cc=cc)


@functools.cache
def snd_test_binary() -> bytes:
    """The static guest program, built on first use and then taken from the cache."""
    return guest_program.build_static(SOURCE, GUEST_NAME, cflags=CFLAGS, libs=LIBS)


def guest_files() -> dict[str, bytes]:
    """The `extra_files` argument of `Guest.run` that installs /snd-test."""
    return {GUEST_NAME: snd_test_binary()}


@dataclass
class SndReport:
    """What one snd-test invocation printed.

    `fields` holds the one-token lines (``frames=96256``); `records` the lines of
    several tokens, one per mixer element (``numid=1 iface=MIXER name="..." ...``).
    """

    cmd: str
    fields: dict[str, str] = field(default_factory=dict)
    records: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return "error" not in self.fields

    def __getitem__(self, key: str) -> str:
        try:
            return self.fields[key]
        except KeyError:
            raise KeyError(f"{key!r} not in the {self.cmd} report: {self.fields}") from None

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def as_int(self, key: str) -> int:
        return int(self[key])

    def as_float(self, key: str) -> float:
        return float(self[key])

    def as_range(self, key: str) -> tuple[int, int]:
        """A ``min-max`` field of pcm-info (or ``allowed`` after a refusal)."""
        low, high = self[key].split("-")
        return int(low), int(high)

    def as_list(self, key: str) -> list[str]:
        """A comma-separated field (``formats``, ``rates``)."""
        value = self[key]
        return value.split(",") if value else []

    def element(self, name: str) -> dict[str, str] | None:
        """The control element record with this name, if the report lists it."""
        return next((r for r in self.records if r.get("name") == name), None)

    def values(self, name: str) -> list[int]:
        """The current values of a control element (one per channel)."""
        record = self.element(name)
        if record is None or "value" not in record:
            raise KeyError(f"no values for element {name!r} in {self.records}")
        return [int(v) for v in record["value"].split(",")]


def _tokens(line: str) -> list[tuple[str, str]] | None:
    """A report line as (key, value) pairs, or None for anything else on the console
    (kernel messages, shell output)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    pairs = [tuple(word.split("=", 1)) for word in words if "=" in word]
    if not words or len(pairs) != len(words) or not all(_KEY.match(k) for k, _ in pairs):
        return None
    return [(k, v) for k, v in pairs]


def parse_reports(text: str) -> list[SndReport]:
    """Every snd-test report in `text` (a guest's console), in order. Each starts at its
    ``cmd=`` line; lines that are not key=value tokens are skipped."""
    reports: list[SndReport] = []
    for raw in text.splitlines():
        pairs = _tokens(raw.strip().replace("\r", ""))
        if not pairs:
            continue
        if len(pairs) == 1 and pairs[0][0] == "cmd":
            reports.append(SndReport(pairs[0][1]))
        elif not reports:
            continue
        elif len(pairs) == 1:
            reports[-1].fields[pairs[0][0]] = pairs[0][1]
        else:
            reports[-1].records.append(dict(pairs))
    return reports


def parse_report(text: str, cmd: str | None = None) -> SndReport:
    """The one report in `text` (or the last one for subcommand `cmd`)."""
    found = [r for r in parse_reports(text) if cmd is None or r.cmd == cmd]
    if not found or (cmd is None and len(found) > 1):
        raise ValueError(f"expected one snd-test report{f' for {cmd}' if cmd else ''}: {text!r}")
    return found[-1]


def by_cmd(reports: list[SndReport], cmd: str) -> list[SndReport]:
    """The reports of one subcommand, in the order the script ran them."""
    return [r for r in reports if r.cmd == cmd]


def within(value: float, expected: float, tolerance: float = 0.10) -> bool:
    """`value` is `expected` give or take `tolerance` (a fraction of it)."""
    return abs(value - expected) <= tolerance * expected
