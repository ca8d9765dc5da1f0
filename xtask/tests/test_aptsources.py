"""xtask.aptsources: apt's two source formats, parsed from strings and temp dirs (the
machine's own apt configuration is never read or changed)."""

from __future__ import annotations

from pathlib import Path

from xtask import aptsources
from xtask.aptsources import Source, debian_archives, parse_deb822, parse_one_line

HERE = Path("/etc/apt/sources.list.d/test.sources")
KEY = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEBIAN_SOURCES = f"""\
# The main archive, then security (as Debian's installer writes them).
Types: deb
# a comment inside a stanza does not end it
URIs: file:/srv/mirror/debian
Suites: bookworm bookworm-updates
Components: main contrib non-free-firmware
Signed-By: {KEY}

Types: deb
URIs: file:/srv/mirror/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEY}
"""


def test_deb822_stanzas_fields_and_comments() -> None:
    main, security = parse_deb822(DEBIAN_SOURCES, HERE)
    assert main == Source(
        origin=HERE,
        types=("deb",),
        uris=("file:/srv/mirror/debian",),
        suites=("bookworm", "bookworm-updates"),
        components=("main", "contrib", "non-free-firmware"),
        options=(("Signed-By", KEY),),
    )
    assert security.suites == ("bookworm-security",)
    assert security.signed_by == KEY


def test_deb822_field_names_are_case_insensitive_and_enabled_no_disables() -> None:
    text = "types: deb deb-src\nuris: file:/a\nsuites: trixie\ncomponents: main\nEnabled: no\n"
    (source,) = parse_deb822(text, HERE)
    assert source.types == ("deb", "deb-src")
    assert not source.enabled
    assert source.option("enabled") is None  # Enabled is not an option to carry over
    (on,) = parse_deb822(text.replace("Enabled: no", "Enabled: yes"), HERE)
    assert on.enabled


def test_deb822_stanza_without_uris_or_suites_is_skipped() -> None:
    text = "Types: deb\nSuites: bookworm\n\nTypes: deb\nURIs: file:/a\n\n# only a comment\n"
    assert parse_deb822(text, HERE) == []


def test_deb822_multi_line_inline_key_is_kept_and_written_back() -> None:
    text = (
        "Types: deb\nURIs: file:/a\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    (source,) = parse_deb822(text, HERE)
    assert source.signed_by == (
        "\n-----BEGIN PGP PUBLIC KEY BLOCK-----\n.\nmQINBGPL\n-----END PGP PUBLIC KEY BLOCK-----"
    )
    written = aptsources.suite_stanzas([source], "bookworm-backports")
    assert written.endswith(
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n"
    )
    (again,) = parse_deb822(written, HERE)
    assert again.signed_by == source.signed_by


def test_one_line_entries_options_and_comments() -> None:
    text = f"""\
# deb file:/srv/commented bookworm main
deb file:/srv/plain/debian bookworm main contrib   # trailing comment
deb-src file:/srv/plain/debian bookworm main
deb [signed-by={KEY} arch=amd64,i386] file:/srv/keyed/debian bookworm-updates main
deb\t[ arch+=i386  trusted=yes ]\tfile:/srv/spaced/debian\tbookworm main
deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_ - Official amd64 DVD]/ bookworm contrib main
deb [arch=amd64 file:/srv/unclosed bookworm main
deb file:/srv/no-suite
not-a-type file:/srv/x bookworm main
"""
    plain, src, keyed, spaced = parse_one_line(text, HERE)
    assert plain == Source(
        origin=HERE,
        types=("deb",),
        uris=("file:/srv/plain/debian",),
        suites=("bookworm",),
        components=("main", "contrib"),
    )
    assert plain.signed_by is None
    assert src.types == ("deb-src",)
    assert keyed.options == (("Signed-By", KEY), ("Architectures", "amd64 i386"))
    assert keyed.suites == ("bookworm-updates",)
    assert spaced.options == (("Architectures-Add", "i386"), ("Trusted", "yes"))
    assert spaced.uris == ("file:/srv/spaced/debian",)


def test_read_sources_reads_what_apt_reads_in_apts_order(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb file:/srv/list bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "b.list").write_text("deb file:/srv/b bookworm main\n")
    (parts / "a.sources").write_text("Types: deb\nURIs: file:/srv/a\nSuites: bookworm\n")
    # apt ignores these names, so must we: a farm's disabled copies, editor leftovers.
    (parts / "c.list.disabled-by-farm").write_text("deb file:/srv/off bookworm main\n")
    (parts / "d.sources.disabled-by-farm").write_text("Types: deb\nURIs: file:/srv/off\n")
    (parts / "e.list~").write_text("deb file:/srv/off bookworm main\n")
    (parts / "f.list").mkdir()
    sources = aptsources.read_sources(tmp_path / "sources.list", parts)
    assert [s.uris[0] for s in sources] == ["file:/srv/list", "file:/srv/a", "file:/srv/b"]
    assert sources[1].origin == parts / "a.sources"


def test_read_sources_without_files(tmp_path: Path) -> None:
    assert aptsources.read_sources(tmp_path / "none.list", tmp_path / "none.d") == []


THIRD_PARTY = """\
Types: deb
URIs: file:/srv/nodesource/node_20.x
Suites: nodistro
Components: main
Signed-By: /usr/share/keyrings/nodesource.gpg

Types: deb
URIs: file:/srv/php
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/php-archive.gpg

Types: deb
URIs: file:/srv/off/debian
Suites: bookworm
Components: main
Enabled: no
"""


def test_debian_archives_are_the_release_mirrors_only() -> None:
    sources = [
        *parse_deb822(DEBIAN_SOURCES + "\n" + THIRD_PARTY, HERE),
        *parse_one_line(
            "deb file:/srv/cloud-sdk cloud-sdk-bookworm main\n"
            "deb-src file:/srv/src-only/debian bookworm main\n"
            "deb file:/srv/contrib-only/debian bookworm contrib\n"
            "deb file:/srv/other-release/debian trixie main\n"
            "deb [signed-by=/usr/share/keyrings/debian-archive-bookworm-stable.gpg] "
            "file:/srv/second/debian bookworm-updates main\n"
            "deb [signed-by=0123456789ABCDEF0123456789ABCDEF01234567] "
            "file:/srv/by-fingerprint/debian bookworm main\n",
            HERE,
        ),
    ]
    archives = debian_archives(sources, "bookworm")
    assert [s.uris[0] for s in archives] == [
        "file:/srv/mirror/debian",
        "file:/srv/second/debian",
        "file:/srv/by-fingerprint/debian",
    ]
    assert debian_archives(sources, "trixie")[0].uris == ("file:/srv/other-release/debian",)
    assert debian_archives(sources, "forky") == []


def test_has_suite_counts_enabled_binary_entries_only() -> None:
    sources = parse_one_line("deb-src file:/a bookworm-backports main\n", HERE)
    sources += parse_deb822(
        "Types: deb\nURIs: file:/a\nSuites: bookworm-backports\nEnabled: false\n", HERE
    )
    assert not aptsources.has_suite(sources, "bookworm-backports")
    sources += parse_one_line("deb file:/a bookworm-backports main\n", HERE)
    assert aptsources.has_suite(sources, "bookworm-backports")


def test_suite_stanzas_one_per_mirror_with_its_key_and_options() -> None:
    sources = parse_deb822(
        f"Types: deb\nURIs: file:/srv/a/debian file:/srv/b/debian\nSuites: bookworm\n"
        f"Components: main contrib\nSigned-By: {KEY}\nArchitectures: amd64\n",
        HERE,
    ) + parse_one_line(
        # the same mirror again (its -updates line), and one with no key at all
        f"deb [signed-by={KEY} arch=amd64] file:/srv/a/debian bookworm main\n"
        "deb file:/srv/c/debian bookworm-updates main\n"
        "deb file:/srv/c/debian bookworm main\n",
        HERE,
    )
    text = aptsources.suite_stanzas(debian_archives(sources, "bookworm"), "bookworm-backports")
    assert text == (
        "Types: deb\n"
        "URIs: file:/srv/a/debian file:/srv/b/debian\n"
        "Suites: bookworm-backports\n"
        "Components: main\n"
        f"Signed-By: {KEY}\n"
        "Architectures: amd64\n"
        "\n"
        "Types: deb\n"
        "URIs: file:/srv/c/debian\n"
        "Suites: bookworm-backports\n"
        "Components: main\n"
    )
    written = parse_deb822(text, HERE)
    assert [s.suites for s in written] == [("bookworm-backports",)] * 2
    assert written[1].signed_by is None
