"""Hatchling build hook: compile the Cython modules of vhost_user_core.

Our own small hook rather than hatch-cython, which compiles every .py and ships the
generated C. Wheels get the compiled extensions; editable installs build them in place.
"""

from __future__ import annotations

import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = Path("src/vhost_user_core")
MODULES = ("memory", "virtqueue", "driver")


def compile_extensions(root: Path, out_dir: Path) -> list[Path]:
    """cythonize + build_ext every module into `out_dir`; returns the built files."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    src = root / PACKAGE
    extensions = [
        Extension(
            f"vhost_user_core.{name}",
            [str(src / f"{name}.pyx")],
            extra_compile_args=["-O2", "-g0"],
        )
        for name in MODULES
    ]
    with tempfile.TemporaryDirectory() as tmp:
        modules = cythonize(
            extensions,
            compiler_directives={"language_level": 3},
            build_dir=tmp,
            include_path=[str(root / "src")],
            quiet=True,
        )
        dist = Distribution({"name": "vhost-user-core", "ext_modules": modules})
        cmd = build_ext(dist)
        cmd.build_lib = str(Path(tmp) / "lib")
        cmd.build_temp = str(Path(tmp) / "temp")
        cmd.ensure_finalized()
        cmd.run()
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in MODULES:
            artefact = Path(tmp) / "lib" / "vhost_user_core" / f"{name}{suffix}"
            target = out_dir / artefact.name
            shutil.copy2(artefact, target)
            built.append(target)
    return built


class CythonBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version == "editable":
            compile_extensions(root, root / PACKAGE)
            return
        out = Path(self.directory) / "cython-build"
        for path in compile_extensions(root, out):
            build_data["force_include"][str(path)] = f"vhost_user_core/{path.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(Path(self.directory) / "cython-build", ignore_errors=True)
