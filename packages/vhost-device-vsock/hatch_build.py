"""Compiles this package's Cython modules with vhost-user-core's build hook (the module
list and the libraries they link are in pyproject.toml)."""

from vhost_user_core.cython_build import CythonBuildHook

__all__ = ["CythonBuildHook"]
