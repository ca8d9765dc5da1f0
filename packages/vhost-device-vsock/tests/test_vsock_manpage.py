"""The committed man page is what the argparse parser renders today."""

from __future__ import annotations

from pathlib import Path

from vhost_user_core.manpage import PackagePage

PACKAGE = Path(__file__).resolve().parents[1]


def test_man_page_matches_the_parser() -> None:
    page = PackagePage.of(PACKAGE)
    assert page.path == PACKAGE / "man" / "vhost-device-vsock.1"
    assert page.diff() == "", "run `python3 xtask manpages`"
    for flag in ("guest\\-cid", "uds\\-path", "tx\\-buffer\\-size", "groups", "CONNECT"):
        assert flag in page.page
