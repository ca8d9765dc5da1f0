"""The shared command-line pieces: --version reads the one version source."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

import vhost_user_core
from vhost_user_core import add_version_arg


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vhost-device-x")
    add_version_arg(parser, "vhost-user-core")
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([flag])
        assert exc.value.code == 0
        assert capsys.readouterr().out == f"vhost-device-x {vhost_user_core.__version__}\n"


def test_dunder_version_is_the_distribution_metadata() -> None:
    assert vhost_user_core.__version__ == importlib.metadata.version("vhost-user-core")
