"""Flags and defaults match upstream vhost-device-rng; bad values get clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vhost_device_rng
from vhost_device_rng.args import MAX_PERIOD_MS, UNLIMITED, build_parser


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(list(argv))


def test_defaults() -> None:
    args = parse("-s", "/tmp/rng.sock")
    assert args.socket_path == "/tmp/rng.sock"
    assert args.socket_count == 1
    assert args.rng_source == "/dev/urandom"
    assert args.period == MAX_PERIOD_MS == 65536
    assert args.max_bytes == UNLIMITED


def test_long_flags() -> None:
    args = parse(
        "--socket-path",
        "x",
        "--socket-count",
        "3",
        "--rng-source",
        "/dev/random",
        "--period",
        "1000",
        "--max-bytes",
        "4096",
    )
    assert (args.socket_count, args.rng_source, args.period, args.max_bytes) == (
        3,
        "/dev/random",
        1000,
        4096,
    )


def test_socket_fd_instead_of_path() -> None:
    assert parse("--socket-fd", "3").socket_fd == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-s", "x", "-c", "0"], "greater than 0"),
        (["-s", "x", "-p", "0"], "greater than 0"),
        (["-s", "x", "-p", "65537"], "longer than 65536"),
        (["-s", "x", "-m", "0"], "greater than 0"),
        (["-s", "x", "-m", "lots"], "not an integer"),
        ([], "required"),
        (["-s", "x", "--socket-fd", "3"], "not allowed with"),
    ],
)
def test_rejected(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_version_flag() -> None:
    """The command prints the installed distribution's version (pyproject's, the only one)."""
    command = [sys.executable, "-m", "vhost_device_rng.main", "--version"]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    assert run.stdout == f"vhost-device-rng {vhost_device_rng.__version__}\n"
