"""The hatchling build hook that compiles a workspace package's Cython modules.

Build-only: a top-level module of the vhost-user-core wheel beside `vhost_user_core`,
which it never imports, so no daemon loads it and loading it in a device's (isolated)
build imports none of the runtime package's compiled modules.

Our own small hook rather than hatch-cython (which compiles every .py and ships the
generated C). A package lists its extensions in pyproject.toml:

    [tool.hatch.build.targets.wheel.hooks.custom]
    path = "hatch_build.py"
    package = "src/vhost_device_sound"
    extensions = ["_pcmring", { name = "_pipewire", pkg-config = ["libpipewire-0.3"] }]

and its hatch_build.py does `from vhost_user_core_build import CythonBuildHook`
(vhost-user-core's own hatch_build.py loads this file by path, since the package is not
installed while it builds). Wheels get the compiled modules; editable installs build them in place.
Standard library, Cython and setuptools only.

It also writes the package's system libraries into its core metadata as
`Requires-External` (one per library, its pkg-config name), which hatchling has no
setting for: the libraries its extensions link (their `pkg-config` lists) and those
`[tool.vhost-device] system-libraries` names (reached through a third-party dependency,
e.g. ALSA's through pyalsaaudio). Declared for the sdist target too
(`[tool.hatch.build.targets.sdist.hooks.custom]`), its PKG-INFO says the same as the
wheel's METADATA, as core metadata 2.2 asks of fields not marked Dynamic.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sysconfig
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


@dataclass(frozen=True)
class ExtensionSpec:
    """One Cython module and the C libraries it links (found with pkg-config)."""

    name: str
    pkg_config: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, item: str | dict[str, Any]) -> ExtensionSpec:
        if isinstance(item, str):
            return cls(item)
        return cls(str(item["name"]), tuple(item.get("pkg-config", ())))


def pkg_config(packages: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(compile flags, link flags) of `packages`; a missing one is a clear error."""
    if not packages:
        return [], []
    try:
        cflags = subprocess.run(
            ["pkg-config", "--cflags", *packages], capture_output=True, text=True, check=True
        ).stdout
        libs = subprocess.run(
            ["pkg-config", "--libs", *packages], capture_output=True, text=True, check=True
        ).stdout
    except FileNotFoundError as exc:
        raise RuntimeError(f"pkg-config is needed to build against {packages}") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"pkg-config cannot find {' '.join(packages)} (install its -dev package): "
            f"{exc.stderr.strip()}"
        ) from exc
    return shlex.split(cflags), shlex.split(libs)


def compile_extensions(
    root: Path, package: str, specs: list[ExtensionSpec], out_dir: Path
) -> list[Path]:
    """cythonize + build_ext every module of `package` (a path under `root`, its last
    part the import name) into `out_dir`; returns the built files."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension  # type: ignore[import-untyped]
    from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

    src = root / package
    import_name = src.name
    extensions = []
    for spec in specs:
        cflags, libs = pkg_config(spec.pkg_config)
        extensions.append(
            Extension(
                f"{import_name}.{spec.name}",
                [str(src / f"{spec.name}.pyx")],
                extra_compile_args=["-O2", "-g0", *cflags],
                extra_link_args=libs,
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        modules = cythonize(  # type: ignore[no-untyped-call]
            extensions,
            compiler_directives={"language_level": 3},
            build_dir=tmp,
            include_path=[str(src.parent)],
            quiet=True,
        )
        dist = Distribution({"name": import_name, "ext_modules": modules})
        cmd = build_ext(dist)
        cmd.build_lib = str(Path(tmp) / "lib")
        cmd.build_temp = str(Path(tmp) / "temp")
        cmd.ensure_finalized()
        cmd.run()
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        built = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            artefact = Path(tmp) / "lib" / import_name / f"{spec.name}{suffix}"
            target = out_dir / artefact.name
            shutil.copy2(artefact, target)
            built.append(target)
    return built


def system_libraries(pyproject: dict[str, Any]) -> list[str]:
    """pkg-config names of the libraries the package expects the system to provide."""
    hook = pyproject.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    extensions = hook.get("wheel", {}).get("hooks", {}).get("custom", {}).get("extensions", [])
    names = [lib for item in extensions for lib in ExtensionSpec.parse(item).pkg_config]
    names += pyproject.get("tool", {}).get("vhost-device", {}).get("system-libraries", [])
    return list(dict.fromkeys(str(name) for name in names))


def with_requires_external(metadata: str, libraries: list[str]) -> str:
    """Core metadata with one `Requires-External` per library, among the headers."""
    headers, sep, body = metadata.partition("\n\n")
    lines = [line for line in headers.split("\n") if not line.startswith("Requires-External:")]
    lines += [f"Requires-External: {library}" for library in libraries]
    return "\n".join(lines) + (sep or "\n") + body


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _rewrite_wheel(path: Path, libraries: list[str]) -> None:
    """METADATA gets the libraries; RECORD its new hash. Every other entry is kept."""
    with zipfile.ZipFile(path) as old:
        entries = [(info, old.read(info)) for info in old.infolist()]
    meta_name, meta = next(
        (i.filename, d) for i, d in entries if i.filename.endswith(".dist-info/METADATA")
    )
    new_meta = with_requires_external(meta.decode(), libraries).encode()
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as new:
        for info, data in entries:
            if info.filename == meta_name:
                data = new_meta
            elif info.filename.endswith(".dist-info/RECORD"):
                rows = [
                    _record_line(meta_name, new_meta) if row.startswith(f"{meta_name},") else row
                    for row in data.decode().splitlines()
                ]
                data = ("\n".join(rows) + "\n").encode()
            new.writestr(info, data)
    os.replace(tmp, path)


def _rewrite_sdist(path: Path, libraries: list[str]) -> None:
    """The top-level PKG-INFO gets the libraries; every other member is kept as is."""
    tmp = path.with_suffix(".tmp")
    with (
        tarfile.open(path, "r:gz") as old,
        tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as new,
    ):
        for member in old.getmembers():
            data = old.extractfile(member) if member.isfile() else None
            if (
                data is not None
                and member.name.count("/") == 1
                and member.name.endswith("/PKG-INFO")
            ):
                text = with_requires_external(data.read().decode(), libraries).encode()
                member.size = len(text)
                data = io.BytesIO(text)
            new.addfile(member, data)
    os.replace(tmp, path)


class CythonBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or "extensions" not in self.config:
            return
        root = Path(self.root)
        package = str(self.config["package"])
        specs = [ExtensionSpec.parse(item) for item in self.config["extensions"]]
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version == "editable":
            compile_extensions(root, package, specs, root / package)
            return
        out = Path(self.directory) / "cython-build"
        import_name = Path(package).name
        for path in compile_extensions(root, package, specs, out):
            build_data["force_include"][str(path)] = f"{import_name}/{path.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(Path(self.directory) / "cython-build", ignore_errors=True)
        with (Path(self.root) / "pyproject.toml").open("rb") as f:
            libraries = system_libraries(tomllib.load(f))
        if not libraries or version == "editable":
            return
        if self.target_name == "wheel":
            _rewrite_wheel(Path(artifact_path), libraries)
        elif self.target_name == "sdist":
            _rewrite_sdist(Path(artifact_path), libraries)
