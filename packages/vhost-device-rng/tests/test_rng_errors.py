"""rng's error tree: a source failure carries its path and errno, and is a BackendError
(so the core's handlers treat it as a host-side failure)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from vhost_device_rng.errors import RngError, SourceError
from vhost_device_rng.source import EntropySource
from vhost_user_core import BackendError, VhostUserError


def test_missing_source_names_its_path_and_errno(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-rng"
    with pytest.raises(SourceError) as info:
        EntropySource(str(missing))
    assert info.value.path == str(missing)
    assert info.value.errno == errno.ENOENT
    assert str(info.value) == f"cannot open rng source {missing}: No such file or directory"


def test_tree_is_rooted_in_the_core() -> None:
    assert issubclass(SourceError, RngError)
    assert issubclass(SourceError, BackendError)
    assert issubclass(RngError, VhostUserError)
