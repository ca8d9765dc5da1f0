"""Build tools stay out of what a daemon imports, and the build hook out of the runtime."""

from __future__ import annotations

import subprocess
import sys

RUNTIME = "vhost_user_core, vhost_user_core.daemon, vhost_user_core.session, vhost_user_core.cli"


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_the_runtime_imports_no_build_or_developer_tool() -> None:
    loaded = _modules_after(f"import {RUNTIME}")
    assert not loaded & {"vhost_user_core_build", "hatchling", "Cython", "setuptools", "xtask"}


def test_the_build_hook_loads_none_of_the_runtime_package() -> None:
    loaded = _modules_after("import vhost_user_core_build")
    assert "vhost_user_core_build" in loaded and "hatchling" in loaded
    assert "vhost_user_core" not in loaded
