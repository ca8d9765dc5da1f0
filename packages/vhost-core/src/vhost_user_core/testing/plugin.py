"""pytest plugin of vhost-user-core (registered through the `pytest11` entry point).

Fixtures:
- `guest_image` (session): the QEMU guest image, built on first use. Never skips: a
  missing QEMU or kernel package fails with how to install it.
- `guest`: a `Guest` runner bound to that image and the test's tmp_path.

Marker `hostkernel(*modules)`: the test runs inside a guest on this machine's root
with those kernel modules loaded (`hostkernel`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from . import hostkernel
from .guest_image import GuestImage, build_image
from .qemu import Guest
from .system_deps import MIN_QEMU_MAJOR, qemu_major


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hostkernel.HookSpecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: boots a real QEMU guest (TCG)")
    hostkernel.configure(config)


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: batch only what runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hostkernel.modify_items(config, items)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    hostkernel.terminal_summary(terminalreporter, config)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    if qemu_major() < MIN_QEMU_MAJOR:
        pytest.fail(
            f"QEMU {MIN_QEMU_MAJOR}+ is required for guest tests; run "
            "`python3 xtask bootstrap` (it installs qemu-system-x86, on bookworm "
            "from bookworm-backports)",
            pytrace=False,
        )
    try:
        return build_image()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot build the guest image: {exc}", pytrace=False)


@pytest.fixture
def guest(guest_image: GuestImage, tmp_path: Path) -> Guest:
    return Guest(guest_image, tmp_path)
