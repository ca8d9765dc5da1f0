"""apt's source entries, read (not changed) so a missing suite can be added from the same
mirror the machine already uses.

Pure parsing of both formats apt reads: deb822 stanzas (`*.sources`) and one-line entries
(`sources.list`, `*.list`). Stdlib only, like the rest of xtask before the venv exists.
Nothing here knows a mirror's address: every URI comes from the machine's own files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The fields that say where and what; everything else in a stanza is an option
#: (Signed-By, Architectures, Trusted, ...) that belongs to the mirror and is carried over.
_CORE_FIELDS = ("types", "uris", "suites", "components", "enabled")
#: One-line option names whose deb822 field is not just the name capitalised.
_ONE_LINE_NAMES = {
    "arch": "Architectures",
    "lang": "Languages",
    "target": "Targets",
    "pdiffs": "PDiffs",
}
#: apt reads only files so named in sources.list.d (others, such as `x.list.disabled`, are
#: ignored), so they must be ignored here too.
_PART_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(list|sources)$")
_FALSE = {"no", "false", "without", "off", "disable", "0"}
#: Suites of a release that live on its main archive (security has an archive of its own).
_ARCHIVE_SUITES = ("", "-updates", "-proposed-updates")


@dataclass(frozen=True)
class Source:
    """One deb822 stanza or one-line entry. `options` are deb822 field names and values."""

    origin: Path
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()
    enabled: bool = True

    def option(self, name: str) -> str | None:
        """An option's value by its deb822 field name (case-insensitive, as in apt)."""
        for key, value in self.options:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def signed_by(self) -> str | None:
        return self.option("Signed-By")


def _stanzas(text: str) -> Iterable[list[tuple[str, str]]]:
    """deb822 paragraphs as (field, value) lists; comment lines are dropped wherever they
    are (a comment does not end a paragraph), continuation lines join their field."""
    fields: list[tuple[str, str]] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields = []
        elif raw[0] in " \t":
            if fields:  # a continuation with no field before it is malformed: dropped
                name, value = fields[-1]
                fields[-1] = (name, f"{value}\n{raw.strip()}")
        elif ":" in raw:
            name, value = raw.split(":", 1)
            fields.append((name.strip(), value.strip()))
    if fields:
        yield fields


def parse_deb822(text: str, origin: Path) -> list[Source]:
    """The stanzas of a `.sources` file; a stanza without Types, URIs or Suites is skipped
    (apt would refuse it; it names no mirror to copy)."""
    sources = []
    for fields in _stanzas(text):
        core = {name.lower(): value for name, value in fields if name.lower() in _CORE_FIELDS}
        if not all(core.get(f) for f in ("types", "uris", "suites")):
            continue
        sources.append(
            Source(
                origin=origin,
                types=tuple(core["types"].split()),
                uris=tuple(core["uris"].split()),
                suites=tuple(core["suites"].split()),
                components=tuple(core.get("components", "").split()),
                options=tuple((n, v) for n, v in fields if n.lower() not in _CORE_FIELDS),
                enabled=core.get("enabled", "yes").strip().lower() not in _FALSE,
            )
        )
    return sources


def _one_line_option(item: str) -> tuple[str, str] | None:
    """`signed-by=/k.gpg` as ("Signed-By", "/k.gpg"); `arch+=i386` as
    ("Architectures-Add", "i386"); lists become space-separated, as deb822 writes them."""
    match = re.fullmatch(r"([A-Za-z-]+)([+-]?)=(.*)", item)
    if match is None:
        return None
    name, op, value = match.groups()
    field = _ONE_LINE_NAMES.get(name.lower()) or "-".join(
        part.capitalize() for part in name.split("-")
    )
    field += {"+": "-Add", "-": "-Remove"}.get(op, "")
    return field, value.replace(",", " ")


def parse_one_line(text: str, origin: Path) -> list[Source]:
    """The entries of a `sources.list`-style file: `deb [opts] uri suite [component...]`.
    `#` starts a comment; cdrom: entries are skipped (no network mirror to copy)."""
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        kind, *tail = line.split(None, 1) or [""]
        if kind not in ("deb", "deb-src") or not tail:
            continue
        rest = tail[0]
        options: list[tuple[str, str]] = []
        if rest.startswith("["):
            inside, bracket, rest = rest[1:].partition("]")
            if not bracket:
                continue  # unclosed options: apt rejects the line
            for item in inside.split():
                option = _one_line_option(item)
                if option is not None:
                    options.append(option)
        words = rest.split()
        if len(words) < 2 or words[0].startswith("cdrom:"):
            continue
        sources.append(
            Source(
                origin=origin,
                types=(kind,),
                uris=(words[0],),
                suites=(words[1],),
                components=tuple(words[2:]),
                options=tuple(options),
            )
        )
    return sources


def read_sources(sourcelist: Path, sourceparts: Path) -> list[Source]:
    """Every entry apt reads, in apt's order: the main list, then the parts by name."""
    sources: list[Source] = []
    if sourcelist.is_file():
        sources += parse_one_line(sourcelist.read_text(errors="replace"), sourcelist)
    parts = sorted(sourceparts.iterdir()) if sourceparts.is_dir() else []
    for path in parts:
        if not path.is_file() or not _PART_NAME.match(path.name):
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            sources += parse_deb822(text, path)
        else:
            sources += parse_one_line(text, path)
    return sources


def has_suite(sources: Iterable[Source], suite: str) -> bool:
    """Whether an enabled binary entry already serves `suite`."""
    return any(s.enabled and "deb" in s.types and suite in s.suites for s in sources)


def _debian_signed(source: Source) -> bool:
    """False when Signed-By names only keyrings that are not Debian's archive keyrings (a
    third-party repository reusing the release's suite name); no key or a fingerprint
    cannot tell, and counts as Debian."""
    if source.signed_by is None:
        return True
    items = source.signed_by.replace(",", " ").split()
    paths = [item for item in items if item.startswith("/")]
    if not paths or len(paths) != len(items):
        return True
    return any(Path(p).name.startswith("debian-archive-") for p in paths)


def debian_archives(sources: Iterable[Source], codename: str) -> list[Source]:
    """The enabled entries that are a mirror of the Debian archive for `codename`: they
    serve its release (or -updates) suite with `main`, and are not signed by some other
    vendor's key. Security and third-party repositories have other suites, or keys."""
    wanted = {codename + suffix for suffix in _ARCHIVE_SUITES}
    return [
        s
        for s in sources
        if s.enabled
        and "deb" in s.types
        and wanted.intersection(s.suites)
        and "main" in s.components
        and _debian_signed(s)
    ]


def _field(name: str, value: str) -> str:
    """A deb822 field; a multi-line value (an inline key) continues on indented lines."""
    first, *more = value.split("\n")
    head = f"{name}: {first}\n" if first else f"{name}:\n"
    return "".join([head, *(f" {line or '.'}\n" for line in more)])


def suite_stanzas(archives: Iterable[Source], suite: str) -> str:
    """deb822 text adding `suite` (main only) from each mirror of `archives`, with its
    options (the signing key above all) as the machine has them. A mirror listed twice
    (its release and -updates lines) is written once: apt warns about duplicates."""
    written: set[str] = set()
    stanzas = []
    for source in archives:
        uris = [uri for uri in source.uris if uri not in written]
        if not uris:
            continue
        written.update(uris)
        text = "".join(
            [
                _field("Types", "deb"),
                _field("URIs", " ".join(uris)),
                _field("Suites", suite),
                _field("Components", "main"),
                *(_field(name, value) for name, value in source.options),
            ]
        )
        stanzas.append(text)
    return "\n".join(stanzas)
