from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipewire_harness import FOREIGN_VARIABLES, PipeWireSession

# -- PipeWire ------------------------------------------------------------------------------
# A headless PipeWire (pipewire + wireplumber + a session bus, see pipewire_harness.py)
# started once per test run, with a null sink and a virtual microphone as the defaults.
# It never skips: `python3 xtask test` installs PipeWire (this package's debian list).


@pytest.fixture(scope="session")
def pipewire_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipeWireSession]:
    """The shared session; tests normally want `pipewire` instead."""
    root: Path = tmp_path_factory.mktemp("pipewire")
    with PipeWireSession(root) as session:
        yield session


@pytest.fixture
def pipewire(pipewire_session: PipeWireSession, monkeypatch: pytest.MonkeyPatch) -> PipeWireSession:
    """The shared session, with this process's environment pointing at it for the test,
    so an in-process PipeWire client (PipeWireBackend) finds it the way it would in
    production: through XDG_RUNTIME_DIR."""
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in pipewire_session.client_env.items():
        monkeypatch.setenv(name, value)
    return pipewire_session
