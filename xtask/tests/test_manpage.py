"""The man page renderer: structure, escaping, README examples, --check, and groff's view."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xtask.manpage import (
    BulletItem,
    CodeBlock,
    Paragraph,
    Section,
    SubHeading,
    escape,
    main,
    readme_section,
    render,
)

README = """\
# vhost-device-sample

Intro text that is not an example.

## Examples

Serve one guest on `/tmp/sample.sock0`, see [the spec](https://example.org/virtio-v1.2):

```sh
vhost-device-sample --socket-path /tmp/sample.sock
.not-a-request 'quoted' \\back
```

- first point with **bold**
- second point
  continued

    indented --code

### Variant

More text.

## Benchmark

Not part of the examples.
"""

FACTORY_MODULE = """\
import argparse

def build_parser():
    parser = argparse.ArgumentParser(prog="vhost-device-sample", description="A sample device")
    parser.add_argument("-s", "--socket-path", metavar="PATH", required=True, help="socket")
    return parser
"""


def sample_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vhost-device-sample",
        description="vhost-user sample backend: does sample things for guests.\n\n"
        "A second paragraph.",
        epilog="Rate limiting: at most MAX-BYTES per PERIOD.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-s", "--socket-path", metavar="PATH", help="socket to listen on")
    group.add_argument("--socket-fd", metavar="FD", type=int, help="a listening socket fd")
    parser.add_argument(
        "-c",
        "--socket-count",
        metavar="N",
        type=int,
        default=1,
        help="number of guests (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        default="info",
        choices=["debug", "info"],
        help="verbosity (default: %(default)s)",
    )
    parser.add_argument("-d", "--device", action="append", help="a device; repeatable")
    exclusive = parser.add_mutually_exclusive_group()
    exclusive.add_argument("--fast", action="store_true", help="go fast")
    exclusive.add_argument("--slow", action="store_true", help="go slow")
    parser.add_argument("--odd", help=".leading dot, back\\slash, it's – odd")
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    tuning = parser.add_argument_group("tuning", "Knobs for experts.")
    tuning.add_argument("--queue-size", type=int, default=256, help="size (default: %(default)s)")
    parser.add_argument("image", nargs="?", help="disk image")
    return parser


def page(**kwargs: object) -> str:
    options: dict[str, object] = {"name": "vhost-device-sample", "version": "1.2.3"}
    options.update(kwargs)
    return render(sample_parser(), **options)  # type: ignore[arg-type]


def sections(text: str) -> list[str]:
    return [line[4:].strip('"') for line in text.splitlines() if line.startswith(".SH ")]


def test_sections_in_man_pages_order() -> None:
    examples = Section("Examples", (Paragraph("Run it."),))
    assert sections(page(extra_sections=[examples])) == [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "ARGUMENTS",
        "OPTIONS",
        "NOTES",
        "EXAMPLES",
        "REPORTING BUGS",
        "VERSION",
    ]


def test_header_is_deterministic_and_dated_only_on_request() -> None:
    assert page() == page()
    assert '.TH "VHOST\\-DEVICE\\-SAMPLE" "1" "" "vhost\\-device\\-sample 1.2.3"' in page()
    assert '"2025\\-01\\-31"' in page(date="2025-01-31")


def test_name_line() -> None:
    lines = page().splitlines()
    name = lines[lines.index(".SH NAME") + 1]
    assert name == (
        "vhost\\-device\\-sample \\- vhost\\-user sample backend: does sample things for guests."
    )


def test_synopsis_groups_and_optionals() -> None:
    text = page()
    synopsis = text[text.index(".SY") : text.index(".YS")]
    assert "(\\fB\\-s\\fR\\ \\fIPATH\\fR | \\fB\\-\\-socket\\-fd\\fR\\ \\fIFD\\fR)" in synopsis
    assert "[\\fB\\-\\-fast\\fR | \\fB\\-\\-slow\\fR]" in synopsis
    assert "[\\fB\\-c\\fR\\ \\fIN\\fR]" in synopsis
    assert "secret" not in text


def test_options_expand_defaults_and_list_choices() -> None:
    text = page()
    assert "number of guests (default: 1)" in text
    assert "size (default: 256)" in text
    assert "Possible values: \\fBdebug\\fR, \\fBinfo\\fR." in text
    assert "%(default)s" not in text


def test_choices_without_metavar_are_shown_once() -> None:
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--mode", choices=["a", "b"], help="mode")
    text = render(parser, name="x", version="1")
    assert "\\fB\\-\\-mode\\fR {\\fIa\\fR,\\fIb\\fR}\nmode\n" in text
    assert "Possible values" not in text


def test_options_explain_groups_and_repetition() -> None:
    text = page()
    assert "Exactly one of \\fB\\-\\-socket\\-path\\fR or \\fB\\-\\-socket\\-fd\\fR" in text
    assert "Cannot be combined with \\fB\\-\\-slow\\fR." in text
    assert "May be given more than once." in text
    assert '.SS "tuning"\nKnobs for experts.' in text


def test_epilog_becomes_notes() -> None:
    assert ".SH NOTES\nRate limiting: at most MAX\\-BYTES per PERIOD." in page()


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a-b", "a\\-b"),
        ("back\\slash", "back\\eslash"),
        ("it's", "it\\(aqs"),
        ("`tick`", "\\(gatick\\(ga"),
        ('"q"', "\\(dqq\\(dq"),
        ("café", "caf\\[u00E9]"),
        ("–", "\\[u2013]"),
        ("tab\there", "tab here"),
        ("bell\a", "bell"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_leading_dot_cannot_start_a_request() -> None:
    lines = page().splitlines()
    odd = next(line for line in lines if "leading dot" in line)
    assert odd.startswith("\\&.leading dot, back\\eslash, it\\(aqs \\[u2013] odd")
    for line in lines:
        if line.startswith(".") and not line.startswith('.\\"'):
            assert line.split()[0] in {
                ".TH",
                ".SH",
                ".SS",
                ".TP",
                ".PP",
                ".br",
                ".SY",
                ".YS",
                ".RS",
                ".RE",
                ".nf",
                ".fi",
                ".IP",
            }, line


def test_readme_examples_section() -> None:
    section = readme_section(README)
    assert section is not None
    assert section.title == "EXAMPLES"
    assert section.blocks == (
        Paragraph(
            "Serve one guest on `/tmp/sample.sock0`, see "
            "[the spec](https://example.org/virtio-v1.2):"
        ),
        CodeBlock(
            "vhost-device-sample --socket-path /tmp/sample.sock\n.not-a-request 'quoted' \\back"
        ),
        BulletItem("first point with **bold**"),
        BulletItem("second point continued"),
        CodeBlock("indented --code"),
        SubHeading("Variant"),
        Paragraph("More text."),
    )


def test_readme_without_examples() -> None:
    assert readme_section("# x\n\nno examples here\n") is None


def test_examples_rendering() -> None:
    section = readme_section(README)
    assert section is not None
    text = page(extra_sections=[section])
    assert "\\%\\fB/tmp/sample.sock0\\fR" in text
    assert "the spec \\%<\\fIhttps://example.org/virtio\\-v1.2\\fR>:" in text
    assert ".nf\nvhost\\-device\\-sample \\-\\-socket\\-path /tmp/sample.sock\n" in text
    assert "\\&.not\\-a\\-request \\(aqquoted\\(aq \\eback\n.fi" in text
    assert ".IP \\(bu 2\nfirst point with \\fBbold\\fR" in text
    assert '.SS "Variant"' in text
    assert "Not part of the examples" not in text


def test_reporting_bugs_url() -> None:
    assert "\\%\\fIhttps://example.org/issues\\fR" in page(bugs="https://example.org/issues")


def test_cli_output_and_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sample_factory.py").write_text(FACTORY_MODULE)
    (tmp_path / "README.md").write_text(README)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "man" / "vhost-device-sample.1"
    common = [
        "sample_factory:build_parser",
        "--name",
        "vhost-device-sample",
        "--version",
        "1.0",
        "--readme",
        str(tmp_path / "README.md"),
    ]
    assert main([*common, "-o", str(out)]) == 0
    assert '.SH "EXAMPLES"' in out.read_text()
    assert main([*common, "--check", str(out)]) == 0
    capsys.readouterr()
    out.write_text(out.read_text().replace("socket", "sock"))
    assert main([*common, "--check", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"--- {out}")
    assert "out of date" in captured.err


def test_cli_rejects_a_bad_spec() -> None:
    with pytest.raises(ValueError, match="MODULE:FACTORY"):
        main(["no_colon", "--name", "x", "--version", "1"])


def _groff() -> str:
    groff = shutil.which("groff")
    if groff is None:
        pytest.fail("groff is missing: `python3 xtask bootstrap` installs groff-base")
    return groff


def test_groff_renders_without_warnings(tmp_path: Path) -> None:
    section = readme_section(README)
    assert section is not None
    path = tmp_path / "sample.1"
    path.write_text(page(extra_sections=[section], bugs="https://example.org/issues"))
    result = subprocess.run(
        [_groff(), "-man", "-Tutf8", "-ww", "-rLL=100n", "-P-cbu", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert result.returncode == 0
    assert result.stderr == ""
    rendered = result.stdout
    for expected in (
        "SYNOPSIS",
        "vhost-device-sample",
        "--socket-path",
        "number of guests",
        "back\\slash, it's – odd",
        ".not-a-request",
        "EXAMPLES",
    ):
        assert expected in rendered, expected


def test_package_mode_reads_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sample_factory.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "README.md").write_text(README)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "vhost-device-sample"\nversion = "2.0"\n'
        '[project.urls]\nIssues = "https://example.org/issues"\n'
        '[tool.vhost-device]\nparser = "sample_factory:build_parser"\nman-date = "2026-01-02"\n'
    )
    assert main(["--package", str(package), "--check"]) == 1  # no page yet
    assert "out of date" in capsys.readouterr().err
    assert main(["--package", str(package)]) == 0
    text = (package / "man" / "vhost-device-sample.1").read_text()
    assert r'"2026\-01\-02" "vhost\-device\-sample 2.0"' in text
    assert "https://example.org/issues" in text and '.SH "EXAMPLES"' in text
    assert main(["--package", str(package), "--check"]) == 0


def test_package_mode_takes_nothing_else(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--package", str(tmp_path), "--name", "x"])
