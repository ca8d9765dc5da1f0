"""The guest harness itself: the cpio writer and one real boot."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vhost_user_core.testing.cpio import Entry, write_newc
from vhost_user_core.testing.qemu import Guest


def test_cpio_round_trip_through_busybox(tmp_path: Path) -> None:
    archive = write_newc(
        [
            Entry.directory("d"),
            Entry("d/f.txt", b"hello\n"),
            Entry.executable("run", b"#!/bin/sh\n"),
            Entry.symlink("l", "d"),
        ]
    )
    (tmp_path / "a.cpio").write_bytes(archive)
    out = tmp_path / "x"
    out.mkdir()
    busybox = shutil.which("busybox") or "/bin/busybox"
    subprocess.run(
        [busybox, "cpio", "-i", "-d", "-F", str(tmp_path / "a.cpio")],
        cwd=out,
        check=True,
        capture_output=True,
    )
    assert (out / "d" / "f.txt").read_bytes() == b"hello\n"
    assert (out / "run").stat().st_mode & 0o111
    assert (out / "l").is_symlink() and str((out / "l").readlink()) == "d"


@pytest.mark.guest
def test_guest_runs_script_and_reports_status(guest: Guest) -> None:
    fired: list[float] = []
    result = guest.run(
        'echo hello from the guest; printf "\\001\\002bin" > "$OUTPORT"; sleep 1; exit 7',
        on_console={"hello from the guest": lambda: fired.append(time.monotonic())},
    )
    ended = time.monotonic()
    assert result.rc == 7
    assert result.script_output == "hello from the guest"
    assert result.output_bytes == b"\x01\x02bin"
    assert result.elapsed < 60
    # The host action ran once, while the guest was still in its script (the sleep).
    assert len(fired) == 1 and ended - fired[0] > 0.5
