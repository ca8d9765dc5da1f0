"""The committed man page is what the argparse parser renders today."""

from __future__ import annotations

from pathlib import Path

from vhost_user_core.manpage import PackagePage

PACKAGE = Path(__file__).resolve().parents[1]


def test_man_page_matches_the_parser() -> None:
    assert PackagePage.of(PACKAGE).diff() == "", "run `python3 xtask manpages`"
