"""Build hook of vhost-user-core: compiles its Cython modules (see
src/vhost_user_core_build).

Loaded by path because this package is not installed while it builds itself; other
workspace packages import `vhost_user_core_build.CythonBuildHook` instead.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_vhost_cython_build", Path(__file__).parent / "src/vhost_user_core_build/__init__.py"
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses look their module up there
_spec.loader.exec_module(_module)

CythonBuildHook = _module.CythonBuildHook
