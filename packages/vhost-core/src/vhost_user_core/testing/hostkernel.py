"""The `hostkernel` marker: tests that run inside a guest on this machine's root.

    @pytest.mark.hostkernel("vsock_loopback")
    @pytest.mark.hostkernel("snd-aloop pcm_substreams=1", "i2c-stub chip_addr=0x50")

Outside (the outer pytest), each marked test is replaced by a `HostKernelItem` with
the same node id and no fixtures: the marked tests are grouped (one group per set of
compatible module requirements: the same module with other parameters needs another
boot), and the first item of a group to run boots one `HostRootGuest` that runs the
inner pytest on every test of the group. The inner pytest (recognised by
`INNER_ENV` in its environment) streams one JSON line per test phase back over the
guest's virtio-serial port ($OUTPORT); each outer item then passes, fails with the
inner failure text exactly as pytest rendered it there (and its captured output), or
skips with the inner reason.

The guest's module tree has Debian's modules and `kmodules`' out-of-tree builds; more
.ko files come from the `pytest_hostkernel_modules` hook (a plugin or conftest
returns their paths).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from .guest_image import GuestImage, build_image
from .hostroot import HostRootGuest, ModuleError, ModuleSpec
from .qemu import GuestError

log = logging.getLogger(__name__)

MARKER = "hostkernel"
#: Set in the inner pytest's environment; its results go to $OUTPORT (the guest's
#: virtio-serial port, whose bytes the host reads back).
INNER_ENV = "VHOST_HOSTKERNEL_INNER"
#: Environment passed into the guest (the rest of the host's stays out).
PASSED_ENV = ("HOME", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "TERM")
#: Boot, Python start-up and collection under TCG, plus each test's share.
BOOT_TIMEOUT, PER_TEST_TIMEOUT = 240.0, 60.0


class HookSpecs:
    @pytest.hookspec
    def pytest_hostkernel_modules(self, config: pytest.Config) -> Iterable[os.PathLike[str]]:  # type: ignore[empty-body]
        """More .ko files (out-of-tree builds) for the guest's module tree."""


def inner() -> bool:
    """True inside the guest's pytest."""
    return INNER_ENV in os.environ


def requirements(item: pytest.Item) -> dict[str, ModuleSpec]:
    """The modules an item's `hostkernel` markers name, by kernel name."""
    specs: dict[str, ModuleSpec] = {}
    for mark in item.iter_markers(MARKER):
        for text in mark.args:
            try:
                spec = ModuleSpec.parse(text)
            except ModuleError as exc:
                raise pytest.UsageError(f"{item.nodeid}: @{MARKER}: {exc}") from None
            if spec.key in specs and specs[spec.key] != spec:
                raise pytest.UsageError(
                    f"{item.nodeid}: @{MARKER} names {spec.key} twice: {specs[spec.key]} and {spec}"
                )
            specs[spec.key] = spec
    return specs


# -- the inner side -----------------------------------------------------------------------


class InnerReporter:
    """Writes every test report as one JSON line to `path`."""

    def __init__(self, path: str) -> None:
        self._out: IO[str] = open(path, "w", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        longrepr = report.longrepr
        crash = ""
        if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
            text = str(longrepr[2])
        else:
            text = "" if longrepr is None else str(longrepr)
            reprcrash = getattr(longrepr, "reprcrash", None)
            crash = str(getattr(reprcrash, "message", ""))
        self._write(
            {
                "nodeid": report.nodeid,
                "when": report.when,
                "outcome": report.outcome,
                "longrepr": text,
                "crash": crash,
                "sections": report.sections,
                "duration": report.duration,
            }
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write({"collect_error": report.nodeid, "longrepr": str(report.longrepr)})

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        self._write({"exitstatus": int(exitstatus)})
        self._out.close()


# -- the outer side -----------------------------------------------------------------------


class InnerFailure(Exception):
    """The inner test failed; `text` is its failure as the inner pytest rendered it,
    `crash` the one-line message for the short summary."""

    def __init__(self, text: str, crash: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.crash = crash or (text.splitlines() or [""])[0]


@dataclass(frozen=True)
class _Crash:
    message: str


class InnerRepr:
    """A failure's text as the inner pytest printed it (pytest's reports take any
    object with `toterminal`; `reprcrash.message` is the short summary's line)."""

    def __init__(self, failure: InnerFailure) -> None:
        self.text = failure.text
        self.reprcrash = _Crash(failure.crash)

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


@dataclass
class Outcome:
    outcome: str = "passed"
    text: str = ""
    crash: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    duration: float = 0.0


@dataclass
class Group:
    """Tests whose module requirements fit one boot."""

    modules: dict[str, ModuleSpec]
    nodeids: list[str] = field(default_factory=list)
    results: dict[str, Outcome] | None = None
    #: Why a test has no result (the boot failed, the inner pytest could not collect).
    missing: str = ""
    elapsed: float = 0.0
    boot_seconds: float | None = None
    #: Why the guest had to boot twice, if it did.
    retried: str | None = None

    def fits(self, wanted: dict[str, ModuleSpec]) -> bool:
        return all(self.modules.get(key, spec) == spec for key, spec in wanted.items())


class Batches:
    """Every hostkernel group of the session and the boots that ran them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.groups: list[Group] = []
        self._image: GuestImage | None = None

    def add(self, item: pytest.Item) -> Group:
        wanted = requirements(item)
        for group in self.groups:
            if group.fits(wanted):
                break
        else:
            group = Group({})
            self.groups.append(group)
        group.modules.update(wanted)
        group.nodeids.append(item.nodeid)
        return group

    def run(self, group: Group) -> None:
        """Boot once for `group` and collect its results."""
        group.results = {}
        started = time.monotonic()
        try:
            self._run(group)
        except (GuestError, OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            group.missing = f"the hostkernel guest failed: {exc}"
        finally:
            group.elapsed = time.monotonic() - started

    def _run(self, group: Group) -> None:
        if self._image is None:
            self._image = build_image()
        hook = self.config.hook.pytest_hostkernel_modules
        extra = [Path(p) for paths in hook(config=self.config) for p in paths]
        guest = HostRootGuest(self._image, extra_modules=extra)
        argv = inner_argv(self.config, group.nodeids)
        try:
            result = guest.run(
                argv,
                cwd=self.config.rootpath,
                env=inner_env(),
                modules=list(group.modules.values()),
                timeout=BOOT_TIMEOUT + PER_TEST_TIMEOUT * len(group.nodeids),
            )
        finally:
            group.boot_seconds = guest.boot_seconds
            group.retried = guest.retried
        group.results, errors, finished = parse_results(result.output_bytes)
        if not finished or errors:
            tail = result.console_output[-4000:].replace("\r", "")
            group.missing = (
                f"the inner pytest {'did not finish' if not finished else 'could not collect'} "
                f"(guest exit status {result.rc}, {result.elapsed:.0f} s)"
                + "".join(f"\n{e}" for e in errors)
                + f"\ninner command: {shlex.join(argv)}\nguest console (tail):\n{tail}"
            )


def inner_argv(config: pytest.Config, nodeids: list[str]) -> list[str]:
    """The inner pytest: this one's Python, rootdir and config file, on `nodeids`."""
    args = ["-q", "--color=no", "-p", "no:cacheprovider", "--rootdir", str(config.rootpath)]
    if config.inipath is not None:
        args += ["-c", str(config.inipath)]
    return [sys.executable, "-m", "pytest", *args, *nodeids]


def inner_env() -> dict[str, str]:
    """The inner pytest's whole environment: a few of ours, and the inner-mode flag."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.setdefault("HOME", "/root")
    system = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *system])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env[INNER_ENV] = "1"
    return env


def parse_results(output: bytes) -> tuple[dict[str, Outcome], list[str], bool]:
    """The inner reporter's JSON lines: each test's outcome, the collection errors, and
    whether the inner session finished."""
    results: dict[str, Outcome] = {}
    errors: list[str] = []
    finished = False
    for line in output.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut off by a guest that died
        if "collect_error" in record:
            errors.append(f"{record['collect_error']}: {record['longrepr']}")
        elif "exitstatus" in record:
            finished = True
        else:
            _merge(results.setdefault(record["nodeid"], Outcome()), record)
    return results, errors, finished


def _merge(outcome: Outcome, record: dict[str, Any]) -> None:
    """Fold one phase (setup, call, teardown) into a test's outcome: any failure fails
    it, a skip skips it, and every phase's text and captured output is kept."""
    outcome.duration += float(record["duration"])
    if record["outcome"] == "failed":
        outcome.outcome = "failed"
        phase = "" if record["when"] == "call" else f"(in {record['when']})\n"
        outcome.text = "\n\n".join(t for t in (outcome.text, phase + record["longrepr"]) if t)
        outcome.crash = outcome.crash or record.get("crash", "")
    elif record["outcome"] == "skipped" and outcome.outcome == "passed":
        outcome.outcome = "skipped"
        outcome.text = record["longrepr"]
    for title, content in record["sections"]:
        if (title, content) not in outcome.sections:
            outcome.sections.append((title, content))


class HostKernelItem(pytest.Item):
    """Stands in for a marked test outside the guest: reports what it did inside."""

    def __init__(self, *, group: Group, batches: Batches, origin: pytest.Item, **kw: Any) -> None:
        super().__init__(**kw)
        self.group = group
        self.batches = batches
        self._origin = origin.reportinfo()
        self.own_markers = list(origin.own_markers)
        self.keywords.update(origin.keywords)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self._origin

    def runtest(self) -> None:
        if self.group.results is None:
            self.batches.run(self.group)
        assert self.group.results is not None
        result = self.group.results.get(self.nodeid)
        if result is None:
            raise InnerFailure(
                f"{self.nodeid} did not run inside the guest: {self.group.missing or 'no result'}"
            )
        for title, content in result.sections:
            words = title.split(" ")
            if len(words) == 3 and words[0] == "Captured":
                self.add_report_section(words[2], words[1], content)
        if result.outcome == "skipped":  # reported at the test, not at this line
            raise pytest.skip.Exception(result.text, _use_item_location=True)
        if result.outcome == "failed":
            raise InnerFailure(result.text, result.crash)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, InnerFailure):
            return InnerRepr(excinfo.value)
        return super().repr_failure(excinfo, style)


# -- hooks (called from plugin.py) --------------------------------------------------------


def configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*modules): runs inside a guest on this machine's root with these kernel "
        "modules loaded, e.g. 'i2c-stub chip_addr=0x50' (batched: one boot per group)",
    )
    if inner():
        config.pluginmanager.register(InnerReporter(os.environ["OUTPORT"]), "hostkernel-inner")


def modify_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Replace each marked test by its stand-in (outside the guest only)."""
    if inner() or not any(item.get_closest_marker(MARKER) for item in items):
        return
    batches = Batches(config)
    config.stash[_BATCHES] = batches
    for index, item in enumerate(items):
        if item.get_closest_marker(MARKER) is None or item.parent is None:
            continue
        group = batches.add(item)
        items[index] = HostKernelItem.from_parent(
            item.parent, name=item.name, group=group, batches=batches, origin=item
        )


def terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    batches = config.stash.get(_BATCHES, None)
    if batches is None:
        return
    for group in batches.groups:
        if group.results is None:
            continue
        modules = ", ".join(str(s) for s in group.modules.values()) or "no modules"
        boot = f", root mounted after {group.boot_seconds:.1f} s" if group.boot_seconds else ""
        terminalreporter.write_line(
            f"hostkernel: one boot for {len(group.nodeids)} tests ({modules}): "
            f"{group.elapsed:.1f} s{boot}"
        )
        if group.retried:
            terminalreporter.write_line(
                f"hostkernel: booted twice, the first died: {group.retried}"
            )


_BATCHES = pytest.StashKey[Batches]()
