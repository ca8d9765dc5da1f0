"""Compiles this package's Cython modules with vhost-user-core's build hook (the module
list and the libraries they link are in pyproject.toml). `vhost_user_core_build` is a
build-only module of the vhost-user-core wheel: importing it loads none of the runtime
package, so an isolated build needs only that wheel in build-system.requires."""

from vhost_user_core_build import CythonBuildHook

__all__ = ["CythonBuildHook"]
