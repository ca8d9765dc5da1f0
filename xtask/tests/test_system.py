"""xtask.system: the per-release choice, and the backports source it derives from the
machine's own Debian sources, checked against real apt on a local file mirror in a temp
dir (APT_CONFIG points apt there: the machine's apt state is neither read nor changed)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from xtask import aptsources, system
from xtask.proc import TaskError
from xtask.system import Release, choose_release, parse_os_release

BOOKWORM = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
TRIXIE = BOOKWORM.replace("12", "13").replace("bookworm", "trixie")
FORKY = 'PRETTY_NAME="Debian GNU/Linux forky/sid"\nVERSION_CODENAME=forky\nID=debian\n'
BULLSEYE = BOOKWORM.replace("12", "11").replace("bookworm", "bullseye")
UBUNTU = """\
PRETTY_NAME="Ubuntu 24.04 LTS"
VERSION_ID="24.04"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
"""


def test_parse_os_release_unquotes_and_skips_comments() -> None:
    fields = parse_os_release(BOOKWORM + "# ID=other\nBROKEN='x\n\n")
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert fields["VERSION_CODENAME"] == "bookworm"
    assert fields["ID"] == "debian"
    assert fields["BROKEN"] == "x"
    assert "# ID" not in fields


def test_bookworm_installs_from_backports() -> None:
    assert choose_release(parse_os_release(BOOKWORM)) == Release("bookworm", "bookworm-backports")


def test_trixie_and_newer_install_from_the_release() -> None:
    assert choose_release(parse_os_release(TRIXIE)) == Release("trixie", None)
    # testing and unstable have no VERSION_ID: newer than any stable release
    assert choose_release(parse_os_release(FORKY)) == Release("forky", None)


def test_older_debian_is_refused() -> None:
    with pytest.raises(TaskError, match="Debian 11 .bullseye. is too old"):
        choose_release(parse_os_release(BULLSEYE))
    with pytest.raises(TaskError, match="VERSION_CODENAME"):
        choose_release({"ID": "debian", "VERSION_ID": "13"})


def test_other_distributions_are_told_what_to_install() -> None:
    assert choose_release(parse_os_release(UBUNTU)) is None
    assert choose_release({}) is None
    debs = ["qemu-system-x86", "busybox-static", "libpipewire-0.3-dev"]
    message = system.other_system_message(parse_os_release(UBUNTU), debs)
    assert message.startswith("Ubuntu 24.04 LTS is not Debian")
    assert message.endswith("qemu-system-x86 busybox-static libpipewire-0.3-dev")
    assert "QEMU 10 or newer" in message
    assert "\n" not in message


KEY = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _parts(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    for name, text in files.items():
        (tmp_path / name if name == "sources.list" else parts / name).write_text(text)
    return tmp_path / "sources.list", parts


def test_backports_text_takes_the_mirror_and_key_of_the_debian_source(tmp_path: Path) -> None:
    sourcelist, parts = _parts(
        tmp_path,
        {
            "debian.sources": (
                f"Types: deb\nURIs: file:/srv/mirror/debian\nSuites: bookworm bookworm-updates\n"
                f"Components: main\nSigned-By: {KEY}\n\n"
                f"Types: deb\nURIs: file:/srv/mirror/debian-security\n"
                f"Suites: bookworm-security\nComponents: main\nSigned-By: {KEY}\n"
            ),
            "vendor.list": "deb [signed-by=/usr/share/keyrings/vendor.gpg] file:/v bookworm main\n",
        },
    )
    own = parts / system.BACKPORTS_FILE
    text = system.backports_text(
        aptsources.read_sources(sourcelist, parts), "bookworm", "bookworm-backports", own
    )
    assert text == (
        "# Written by `python3 xtask` (xtask/system.py): bookworm-backports from the mirror "
        f"of {parts / 'debian.sources'}.\n"
        "Types: deb\nURIs: file:/srv/mirror/debian\nSuites: bookworm-backports\n"
        f"Components: main\nSigned-By: {KEY}\n"
    )
    # Once written, xtask's own file is not "another source already serving the suite":
    # the same text comes out again (so nothing is rewritten), and a changed mirror shows.
    own.write_text(text)
    sources = aptsources.read_sources(sourcelist, parts)
    assert system.backports_text(sources, "bookworm", "bookworm-backports", own) == text
    (parts / "debian.sources").write_text(
        "Types: deb\nURIs: file:/srv/moved/debian\nSuites: bookworm\nComponents: main\n"
    )
    sources = aptsources.read_sources(sourcelist, parts)
    moved = system.backports_text(sources, "bookworm", "bookworm-backports", own)
    assert moved is not None and "URIs: file:/srv/moved/debian\n" in moved
    assert "Signed-By" not in moved  # a source with no key: apt's trusted keys, as there


def test_backports_text_leaves_a_configured_backports_alone(tmp_path: Path) -> None:
    sourcelist, parts = _parts(
        tmp_path,
        {
            "sources.list": (
                "deb file:/srv/debian bookworm main\ndeb file:/srv/debian bookworm-backports main\n"
            )
        },
    )
    sources = aptsources.read_sources(sourcelist, parts)
    own = parts / system.BACKPORTS_FILE
    assert system.backports_text(sources, "bookworm", "bookworm-backports", own) is None


def test_no_debian_source_says_what_to_add(tmp_path: Path) -> None:
    sourcelist, parts = _parts(
        tmp_path,
        {
            "sources.list": "# deb file:/srv/debian bookworm main\n",
            "debian.sources": (
                "Types: deb\nURIs: file:/srv/debian\nSuites: bookworm\nComponents: main\n"
                "Enabled: no\n\n"
                "Types: deb\nURIs: file:/srv/debian-security\nSuites: bookworm-security\n"
                "Components: main\n"
            ),
        },
    )
    sources = aptsources.read_sources(sourcelist, parts)
    with pytest.raises(TaskError) as error:
        system.backports_text(sources, "bookworm", "bookworm-backports", parts / "own.sources")
    message = str(error.value)
    assert message == (
        "apt has no Debian source for bookworm to take a mirror from: add your Debian mirror "
        "(Types: deb, Suites: bookworm, Components: main) to "
        f"{parts / 'debian.sources'} and run again"
    )


def _suite(mirror: Path, suite: str, version: str, extra: str = "") -> None:
    """A one-package suite of a local file mirror, as a Debian archive lays it out."""
    index = mirror / "dists" / suite / "main" / "binary-amd64" / "Packages"
    index.parent.mkdir(parents=True)
    index.write_text(
        f"Package: vhost-probe\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: nobody <nobody@localhost>\nFilename: pool/main/v/vhost-probe.deb\n"
        f"Size: 1\nSHA256: {'0' * 64}\nDescription: probe\n\n"
    )
    data = index.read_bytes()
    (mirror / "dists" / suite / "Release").write_text(
        f"Origin: Debian\nLabel: Debian\nSuite: {suite}\nCodename: {suite}\n{extra}"
        "Date: Sat, 01 Nov 2025 00:00:00 UTC\nArchitectures: amd64\nComponents: main\n"
        f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-amd64/Packages\n"
    )


def test_real_apt_installs_from_the_backports_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apt itself reads the written stanza: `apt-get update` fetches the new suite from
    the machine's mirror, with the mirror's options (here `trusted=yes`) carried over."""
    mirror = tmp_path / "mirror"
    _suite(mirror, "bookworm", "1.0")
    _suite(mirror, "bookworm-backports", "2.0~bpo12+1", "NotAutomatic: yes\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    sourcelist, parts = _parts(
        etc, {"sources.list": f"deb [trusted=yes] file:{mirror} bookworm main\n"}
    )
    for sub in ("lists/partial", "cache/archives/partial", "state", "conf.d", "prefs.d"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "state" / "status").write_text("")
    config = tmp_path / "apt.conf"
    config.write_text(
        f'Dir::Etc::parts "{tmp_path}/conf.d";\nDir::Etc::main "{tmp_path}/none.conf";\n'
        f'Dir::Etc::sourcelist "{sourcelist}";\nDir::Etc::sourceparts "{parts}";\n'
        f'Dir::Etc::preferences "{tmp_path}/none.pref";\n'
        f'Dir::Etc::preferencesparts "{tmp_path}/prefs.d";\n'
        f'Dir::State "{tmp_path}/state";\nDir::State::lists "{tmp_path}/lists";\n'
        f'Dir::State::status "{tmp_path}/state/status";\nDir::Cache "{tmp_path}/cache";\n'
        'APT::Architecture "amd64";\nAPT::Architectures { "amd64"; };\n'
        'Acquire::Languages "none";\nDebug::NoLocking "true";\n'
        # the temp dirs are private to this user: apt must not drop to _apt to read them
        'APT::Sandbox::User "root";\n'
    )
    env = {**os.environ, "APT_CONFIG": str(config)}

    def apt(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "W: " not in done.stderr and "E: " not in done.stderr, done.stderr
        return done.stdout

    # xtask asks apt where its sources are: here, where APT_CONFIG says. The temp dir is
    # this user's own, so xtask needs no sudo to write into it.
    monkeypatch.setenv("APT_CONFIG", str(config))
    monkeypatch.setattr(system, "_root_prefix", lambda: [])
    assert system.apt_source_paths() == (sourcelist, parts)
    own = parts / system.BACKPORTS_FILE
    system.ensure_backports("bookworm", "bookworm-backports")
    assert "URIs: file:" + str(mirror) + "\n" in own.read_text()
    assert "Trusted: yes\n" in own.read_text()
    written = own.stat()
    system.ensure_backports("bookworm", "bookworm-backports")  # up to date: left alone
    assert own.stat().st_ino == written.st_ino and own.stat().st_mtime_ns == written.st_mtime_ns
    assert sorted(p.name for p in parts.iterdir()) == [system.BACKPORTS_FILE]

    apt("apt-get", "update", "-qq")
    simulated = apt("apt-get", "install", "-s", "-t", "bookworm-backports", "vhost-probe")
    assert "Inst vhost-probe (2.0~bpo12+1 Debian:bookworm-backports [all])" in simulated
    # without -t backports is NotAutomatic, as Debian's is: the release's version wins
    assert "Inst vhost-probe (1.0 Debian:bookworm [all])" in apt(
        "apt-get", "install", "-s", "vhost-probe"
    )

    # The user configures backports themselves: xtask's copy goes, so apt sees it once.
    with sourcelist.open("a") as f:
        f.write(f"deb [trusted=yes] file:{mirror} bookworm-backports main\n")
    system.ensure_backports("bookworm", "bookworm-backports")
    assert not own.exists()
    apt("apt-get", "update", "-qq")
