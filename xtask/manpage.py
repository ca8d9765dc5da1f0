"""Render a ROFF man page (section 1) from an argparse parser.

Upstream generates its man pages from the clap parsers (`cargo xtask mangen`); generating ours
from the argparse parsers keeps flags, defaults and the page from drifting apart. The output
depends only on its inputs (no current date, no terminal width), so pages can be committed
and checked with `--check`.

A developer tool, so it lives in xtask and no daemon imports it. It imports the device's
parser, so it runs with the venv's python from the repository root (xtask itself is
stdlib-only, so `-m xtask.manpage` needs nothing else):

    python -m xtask.manpage vhost_device_rng.args:build_parser \\
        --name vhost-device-rng --version 0.1.0 --readme README.md -o man/vhost-device-rng.1

or, reading all of that from a package's pyproject.toml (`[tool.vhost-device] parser`):

    python -m xtask.manpage --package packages/vhost-device-rng [--check]
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BulletItem",
    "CodeBlock",
    "Paragraph",
    "Section",
    "SubHeading",
    "escape",
    "load_parser",
    "main",
    "readme_section",
    "render",
    "PackagePage",
]


# --- document model --------------------------------------------------------------------


@dataclass(frozen=True)
class Paragraph:
    """Filled text; inline Markdown (`code`, **bold**, *emphasis*, [links](url)) is kept."""

    text: str


@dataclass(frozen=True)
class CodeBlock:
    """Literal lines, shown indented and unfilled."""

    text: str


@dataclass(frozen=True)
class BulletItem:
    text: str


@dataclass(frozen=True)
class SubHeading:
    text: str


Block = Paragraph | CodeBlock | BulletItem | SubHeading


@dataclass(frozen=True)
class Section:
    """An extra section such as EXAMPLES, placed before REPORTING BUGS."""

    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


# --- escaping ----------------------------------------------------------------------------

# Characters that ROFF either interprets or typesets as something else (groff turns ' and `
# into curly quotes and - into a hyphen that does not copy-paste as a minus).
_ESCAPES = {
    "\\": r"\e",
    "-": r"\-",
    "'": r"\(aq",
    "`": r"\(ga",
    "~": r"\(ti",
    "^": r"\(ha",
    '"': r"\(dq",
}


def escape(text: str) -> str:
    """Escape plain text for use inside a ROFF line (not a whole line: see `_line`)."""
    out: list[str] = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "\t":
            out.append(" ")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            continue  # control characters have no business in a man page
        elif ord(ch) < 0x80:
            out.append(ch)
        else:
            out.append(f"\\[u{ord(ch):04X}]")  # understood by groff and mandoc alike
    return "".join(out)


def _line(escaped: str) -> str:
    """Make an escaped string safe as a text line: a leading dot would start a request."""
    if escaped.startswith((".", "'")):
        return "\\&" + escaped
    return escaped


def _words(text: str) -> str:
    """Collapse whitespace like argparse's help formatter does."""
    return " ".join(text.split())


_INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\[(?P<label>[^\]]+)\]\((?P<url>[^)\s]+)\)"
    r"|\*\*(?P<bold>[^*]+)\*\*"
    r"|(?<![\w*])\*(?P<em>[^*\s][^*]*)\*(?![\w*])"
    r"|(?<![\w_])_(?P<em2>[^_\s][^_]*)_(?![\w_])"
)


def _inline(text: str) -> str:
    """Escape Markdown-flavoured text, turning its inline markup into font changes."""
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos : match.start()]))
        pos = match.end()
        if match["code"] is not None:
            out.append(rf"\%\fB{escape(match['code'])}\fR")
        elif match["label"] is not None:
            label, url = match["label"], match["url"]
            if url.startswith(("http://", "https://", "mailto:")) and url != label:
                out.append(rf"{_inline(label)} \%<\fI{escape(url)}\fR>")
            else:
                out.append(_inline(label))
        elif match["bold"] is not None:
            out.append(rf"\fB{escape(match['bold'])}\fR")
        else:
            out.append(rf"\fI{escape(match['em'] or match['em2'])}\fR")
    out.append(escape(text[pos:]))
    return "".join(out)


def _quoted(arg: str) -> str:
    """A macro argument: escaped and double-quoted (spaces would split it otherwise)."""
    return f'"{escape(arg)}"'


_METAVAR_TOKEN = re.compile(r"[^\s\[\]{}(),|]+")


def _metavar(text: str) -> str:
    """Italic names inside an argparse metavar ("[X ...]", "{a,b}") with unbreakable spaces."""
    out: list[str] = []
    pos = 0
    for match in _METAVAR_TOKEN.finditer(text):
        out.append(escape(text[pos : match.start()]).replace(" ", "\\ "))
        token = match.group()
        out.append(escape(token) if token == "..." else rf"\fI{escape(token)}\fR")
        pos = match.end()
    out.append(escape(text[pos:]).replace(" ", "\\ "))
    return "".join(out)


def _bold(text: str) -> str:
    return rf"\fB{escape(text)}\fR"


# --- blocks ------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[str]:
    return [_words(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _render_blocks(blocks: Iterable[Block]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            lines += [".PP", _line(_inline(_words(block.text)))]
        elif isinstance(block, BulletItem):
            lines += [r".IP \(bu 2", _line(_inline(_words(block.text)))]
        elif isinstance(block, SubHeading):
            lines += [f".SS {_quoted(_words(block.text))}"]
        else:
            lines += [".PP", ".RS 4", ".nf"]
            for raw in block.text.expandtabs(8).rstrip("\n").split("\n"):
                lines.append(_line(escape(raw.rstrip())) or "\\&")
            lines += [".fi", ".RE"]
    return lines


# --- README ------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_BULLET = re.compile(r"^\s{0,3}(?:[-*+]|\d+[.)])\s+(.*)$")


def readme_section(markdown: str, heading: str = "Examples") -> Section | None:
    """The blocks under a Markdown heading (any level), as upstream's xtask does for its
    EXAMPLES section; None when the README has no such heading."""
    lines = markdown.splitlines()
    start = level = None
    for i, line in enumerate(lines):
        match = _HEADING.match(line)
        if match and match[2].strip().lower() == heading.lower():
            start, level = i + 1, len(match[1])
            break
    if start is None or level is None:
        return None
    body: list[str] = []
    for line in lines[start:]:
        match = _HEADING.match(line)
        if match and len(match[1]) <= level:
            break
        body.append(line)
    return Section(heading.upper(), tuple(_parse_blocks(body)))


def _parse_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    text: list[str] = []
    kind: type[Paragraph] | type[BulletItem] = Paragraph

    def flush() -> None:
        nonlocal text
        if text:
            blocks.append(kind(" ".join(text)))
            text = []

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            marker = fence[1]
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                code.append(lines[i])
                i += 1
            blocks.append(CodeBlock("\n".join(code)))
            i += 1
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        if not text and (line.startswith("    ") or line.startswith("\t")):
            code = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(("    ", "\t"))):
                code.append(lines[i][4:] if lines[i].startswith("    ") else lines[i][1:])
                i += 1
            blocks.append(CodeBlock("\n".join(code).strip("\n")))
            continue
        heading = _HEADING.match(line)
        bullet = _BULLET.match(line)
        if heading:
            flush()
            blocks.append(SubHeading(heading[2]))
        elif bullet:
            flush()
            kind = BulletItem
            text = [bullet[1]]
        elif line.lstrip().startswith("<!--"):
            flush()
        else:
            if not text:
                kind = Paragraph
            text.append(line.strip())
        i += 1
    flush()
    return blocks


# --- parser ------------------------------------------------------------------------------


def _visible(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS


def _args_of(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """argparse's own metavar text for an action ("PATH", "[FILE ...]"), or "" for flags."""
    if action.nargs == 0:
        return ""
    if action.option_strings:
        default = formatter._get_default_metavar_for_optional(action)
    else:
        default = formatter._get_default_metavar_for_positional(action)
    return formatter._format_args(action, default)


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text with %(default)s & co. expanded, through the parser's formatter class
    so ArgumentDefaultsHelpFormatter's automatic defaults show up too."""
    if not action.help:
        return ""
    return parser._get_formatter()._expand_help(action)


def _usage_item(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    args = _args_of(formatter, action)
    if not action.option_strings:
        return _metavar(args)
    flag = _bold(action.option_strings[0])
    return f"{flag}\\ {_metavar(args)}" if args else flag


def _synopsis(parser: argparse.ArgumentParser, name: str) -> list[str]:
    formatter = parser._get_formatter()
    group_of = {
        id(action): group
        for group in parser._mutually_exclusive_groups
        for action in group._group_actions
    }
    items: list[str] = []
    done: set[int] = set()
    ordered = [a for a in parser._actions if a.option_strings] + [
        a for a in parser._actions if not a.option_strings
    ]
    for action in ordered:
        if not _visible(action):
            continue
        group = group_of.get(id(action))
        if group is None:
            item = _usage_item(formatter, action)
            optional = action.option_strings and not action.required
            items.append(f"[{item}]" if optional else item)
            continue
        if id(group) in done:
            continue
        done.add(id(group))
        members = [_usage_item(formatter, a) for a in group._group_actions if _visible(a)]
        inner = " | ".join(members)
        items.append(f"({inner})" if group.required else f"[{inner}]")
    # .SY/.YS (groff's man extensions, also known to mandoc) give a hanging indent and
    # turn off justification, which otherwise stretches the synopsis apart.
    return [f".SY {_quoted(name)}", *items, ".YS"]


def _option_tag(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    if not action.option_strings:
        # Positionals are listed by name, as in --help; SYNOPSIS shows their repetition.
        default = formatter._get_default_metavar_for_positional(action)
        return _metavar(formatter._metavar_formatter(action, default)(1)[0])
    flags = ", ".join(_bold(s) for s in action.option_strings)
    args = _args_of(formatter, action)
    return f"{flags} {_metavar(args)}" if args else flags


def _option_notes(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    notes: list[str] = []
    for group in parser._mutually_exclusive_groups:
        if action not in group._group_actions:
            continue
        members = [a for a in group._group_actions if _visible(a)]
        others = [a for a in members if a is not action]
        if group.required:
            names = " or ".join(_bold(_longest(a)) for a in members)
            notes.append(f"Exactly one of {names} must be given.")
        elif others:
            names = " or ".join(_bold(_longest(a)) for a in others)
            notes.append(f"Cannot be combined with {names}.")
        break
    else:
        if action.option_strings and action.required:
            notes.append("Required.")
    repeatable = (argparse._AppendAction, argparse._AppendConstAction, argparse._CountAction)
    if isinstance(action, repeatable):  # _ExtendAction subclasses _AppendAction
        notes.append("May be given more than once.")
    return notes


def _longest(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    return max(action.option_strings, key=len)


def _render_action(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    formatter = parser._get_formatter()
    raw = isinstance(formatter, argparse.RawTextHelpFormatter)
    help_text = _help(parser, action)
    lines = [".TP", _line(_option_tag(formatter, action))]
    if help_text:
        if raw:
            lines.append("\n.br\n".join(_line(escape(x.strip())) for x in help_text.splitlines()))
        else:
            lines.append(_line(escape(_words(help_text))))
    notes = _option_notes(parser, action)
    if notes:
        # On a line of their own: help texts rarely end with a full stop.
        lines += [".br"] if help_text else []
        lines.append(" ".join(notes))
    # Without a metavar, argparse already shows the choices as {a,b} in the tag.
    listed = action.metavar is None
    if (
        action.choices is not None
        and not listed
        and not isinstance(action, argparse._SubParsersAction)
    ):
        values = ", ".join(_bold(str(c)) for c in action.choices)
        lines += [".br", f"Possible values: {values}."]
    return lines


def _render_subcommands(action: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    lines: list[str] = []
    for choice in action._choices_actions:
        lines += [".TP", _bold(str(choice.metavar or choice.dest))]
        if choice.help:
            lines.append(_line(escape(_words(choice.help))))
    return lines


def _description(parser: argparse.ArgumentParser, text: str) -> list[str]:
    if isinstance(parser._get_formatter(), argparse.RawDescriptionHelpFormatter):
        return _render_blocks([CodeBlock(text.strip("\n"))])
    return _render_blocks(Paragraph(p) for p in _paragraphs(text))


def _options_sections(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    positionals = [
        a
        for a in parser._positionals._group_actions
        if _visible(a) and not isinstance(a, argparse._SubParsersAction)
    ]
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if positionals:
        lines.append(".SH ARGUMENTS")
        for action in positionals:
            lines += _render_action(parser, action)
    for command in commands:
        lines.append(".SH COMMANDS")
        lines += _render_subcommands(command)
    optionals = [a for a in parser._optionals._group_actions if _visible(a)]
    custom = [
        g
        for g in parser._action_groups
        if g not in (parser._positionals, parser._optionals)
        and any(_visible(a) for a in g._group_actions)
    ]
    if optionals or custom:
        lines.append(".SH OPTIONS")
        for action in optionals:
            lines += _render_action(parser, action)
        for group in custom:
            lines.append(f".SS {_quoted(_words(group.title or ''))}")
            if group.description:
                lines += _description(parser, group.description)
            for action in group._group_actions:
                if _visible(action):
                    lines += _render_action(parser, action)
    return lines


def render(
    parser: argparse.ArgumentParser,
    *,
    name: str,
    version: str,
    date: str = "",
    section: str = "1",
    manual: str = "User Commands",
    extra_sections: Sequence[Section] = (),
    bugs: str | None = None,
    source: str | None = None,
) -> str:
    """The whole page. `date` is printed as given (no clock is read), so the same inputs
    always give the same bytes; `source` only names the generator in a comment."""
    description = parser.description or ""
    summary = _words(_paragraphs(description)[0]) if description.strip() else ""
    generated = f" from {source}" if source else ""
    lines = [
        f'.\\" Generated by xtask.manpage{generated}; do not edit by hand.',
        f".TH {_quoted(name.upper())} {_quoted(section)} {_quoted(date)}"
        f" {_quoted(f'{name} {version}')} {_quoted(manual)}",
        ".SH NAME",
        _line(escape(f"{name} - {summary}" if summary else name)),
        ".SH SYNOPSIS",
        *_synopsis(parser, name),
    ]
    if description.strip():
        lines += [".SH DESCRIPTION", *_description(parser, description)]
    lines += _options_sections(parser)
    if parser.epilog and parser.epilog.strip():
        lines += [".SH NOTES", *_description(parser, parser.epilog)]
    for extra in extra_sections:
        if extra.blocks:
            lines += [f".SH {_quoted(extra.title.upper())}", *_render_blocks(extra.blocks)]
    lines.append('.SH "REPORTING BUGS"')
    if bugs:
        lines += ["Report bugs at:", ".br", rf"\%\fI{escape(bugs)}\fR"]
    else:
        lines.append(escape("Report bugs to the vhost-device-py project's issue tracker."))
    lines += [".SH VERSION", escape(version)]
    return "\n".join(_tidy(lines)) + "\n"


def _tidy(lines: list[str]) -> list[str]:
    """Drop paragraph macros right after a heading: they are no-ops that linters flag."""
    out: list[str] = []
    for line in lines:
        if line == ".PP" and out and out[-1].startswith((".SH", ".SS")):
            continue
        out.append(line)
    return out


# --- command line ------------------------------------------------------------------------


def load_parser(spec: str) -> argparse.ArgumentParser:
    """Import `module:factory` (a callable returning a parser, or a parser itself)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is not MODULE:FACTORY")
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    parser = obj() if callable(obj) and not isinstance(obj, argparse.ArgumentParser) else obj
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"{spec} did not give an argparse.ArgumentParser")
    return parser


@dataclass(frozen=True)
class PackagePage:
    """A workspace package's man page: where it lives and what it should contain.

    Everything comes from the package's pyproject.toml (name, version, issue URL, and
    `[tool.vhost-device]` parser and optional man-date) and its README's Examples."""

    path: Path
    page: str

    @classmethod
    def of(cls, package_dir: Path) -> PackagePage:
        with (package_dir / "pyproject.toml").open("rb") as f:
            pyproject = tomllib.load(f)
        project = pyproject["project"]
        tool = pyproject.get("tool", {}).get("vhost-device", {})
        if "parser" not in tool:
            raise ValueError(f"{package_dir}: no [tool.vhost-device] parser in pyproject.toml")
        urls = {k.lower(): str(v) for k, v in project.get("urls", {}).items()}
        bugs = next((urls[k] for k in ("issues", "bug tracker", "bugs") if k in urls), None)
        readme = package_dir / "README.md"
        examples = readme_section(readme.read_text(encoding="utf-8")) if readme.is_file() else None
        page = render(
            load_parser(tool["parser"]),
            name=project["name"],
            version=project["version"],
            date=str(tool.get("man-date", "")),
            extra_sections=[examples] if examples else [],
            bugs=bugs,
            source=tool["parser"],
        )
        return cls(package_dir / "man" / f"{project['name']}.1", page)

    def diff(self) -> str:
        """A unified diff from the file on disk to the page; empty when up to date."""
        current = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        return "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                self.page.splitlines(keepends=True),
                fromfile=str(self.path),
                tofile=f"{self.path} (generated)",
            )
        )


def _build_cli() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m xtask.manpage",
        description="Render a section-1 ROFF man page from an argparse parser factory.",
    )
    cli.add_argument("parser", metavar="MODULE:FACTORY", nargs="?", help="parser factory")
    cli.add_argument(
        "--package",
        type=Path,
        metavar="DIR",
        help="take everything from DIR/pyproject.toml; the page is DIR/man/NAME.1",
    )
    cli.add_argument("--name", help="program name (NAME, SYNOPSIS, title)")
    cli.add_argument("--version", help="version printed in the page footer")
    cli.add_argument("--date", default="", help="date printed in the footer (default: none)")
    cli.add_argument("--section", default="1", help="manual section (default: %(default)s)")
    cli.add_argument("--readme", type=Path, help="README whose '## Examples' becomes EXAMPLES")
    cli.add_argument("--bugs", metavar="URL", help="where to report bugs")
    out = cli.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the page here")
    out.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        nargs="?",
        const=Path(),
        help="exit 1 with a diff if FILE (with --package: the package's page) differs",
    )
    return cli


def _package_main(args: argparse.Namespace) -> int:
    package = PackagePage.of(args.package)
    if args.check is not None:
        diff = package.diff()
        sys.stdout.write(diff)
        if diff:
            print(f"{package.path} is out of date", file=sys.stderr)
        return 1 if diff else 0
    package.path.parent.mkdir(parents=True, exist_ok=True)
    package.path.write_text(package.page, encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    cli = _build_cli()
    args = cli.parse_args(argv)
    if args.package is not None:
        if args.parser or args.name or args.version or args.output:
            cli.error("--package takes everything from pyproject.toml; give nothing else")
        return _package_main(args)
    if not (args.parser and args.name and args.version):
        cli.error("MODULE:FACTORY, --name and --version are required without --package")
    if args.check == Path():
        cli.error("--check needs a FILE without --package")
    extra: list[Section] = []
    if args.readme is not None:
        examples = readme_section(args.readme.read_text(encoding="utf-8"))
        if examples is not None:
            extra.append(examples)
    page = render(
        load_parser(args.parser),
        name=args.name,
        version=args.version,
        date=args.date,
        section=args.section,
        extra_sections=extra,
        bugs=args.bugs,
        source=args.parser,
    )
    if args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.exists() else ""
        if current == page:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                page.splitlines(keepends=True),
                fromfile=str(args.check),
                tofile=f"{args.check} (generated)",
            )
        )
        print(f"{args.check} is out of date", file=sys.stderr)
        return 1
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
