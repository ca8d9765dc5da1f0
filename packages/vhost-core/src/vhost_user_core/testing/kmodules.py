"""Guest kernel modules that Debian's 6.12 kernel leaves out, built out of tree.

`gpio-sim`, `i2c-virtio` and `gpio-virtio` are compiled from Debian's own `linux-source`
against the headers of exactly the guest's kernel. Like the kernel image, the packages
are downloaded and unpacked, not installed: `linux-headers-<ver>` depends on the
matching `linux-image`, and installing it would put a kernel, initramfs-tools and udev
on the build machine. Only the few source files are extracted from the big tarball, and
the .ko files are cached in the guest cache dir, so only the first call pays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Module:
    """How to build one module: its Kconfig symbol and its sources, each as (object name
    in the build dir, path in the kernel tree)."""

    config: str
    sources: tuple[tuple[str, str], ...]


#: Every module this file can build, by the name Kconfig gives it.
MODULES: dict[str, Module] = {
    "i2c-virtio": Module("CONFIG_I2C_VIRTIO", (("i2c-virtio", "drivers/i2c/busses/i2c-virtio.c"),)),
    "gpio-virtio": Module("CONFIG_GPIO_VIRTIO", (("gpio-virtio", "drivers/gpio/gpio-virtio.c"),)),
    # gpio-sim selects IRQ_SIM, which Debian's kernel does not build in: its interrupt
    # simulator is linked into the module (its exports then come from gpio_sim).
    "gpio-sim": Module(
        "CONFIG_GPIO_SIM",
        (("gpio-sim-main", "drivers/gpio/gpio-sim.c"), ("irq_sim", "kernel/irq/irq_sim.c")),
    ),
}

#: Source edits, (path, old, new), each of which must match exactly once. irq_sim calls
#: irq_to_desc(), which vmlinux does not export; generic_handle_irq() is the exported
#: equivalent (it runs the descriptor's handler, which irq_sim sets to handle_simple_irq).
FIXUPS: tuple[tuple[str, str, str], ...] = (
    (
        "kernel/irq/irq_sim.c",
        "handle_simple_irq(irq_to_desc(irqnum));",
        "generic_handle_irq(irqnum);",
    ),
)

#: Bumped when the way modules are built changes in a way the recipe does not show.
FORMAT = 1


def recipe() -> str:
    """Everything that decides what gets built, as text (part of the cache key)."""
    modules = {name: [m.config, [list(s) for s in m.sources]] for name, m in MODULES.items()}
    return json.dumps(
        {"modules": modules, "fixups": [list(f) for f in FIXUPS], "format": FORMAT},
        sort_keys=True,
    )


def cache_key(kernel_version: str, recipe_text: str) -> str:
    """The kernel ABI and the recipe. Debian renames the ABI (6.12.117+deb12) whenever
    it changes, so a rebuild of the same ABI needs no new modules; vermagic and
    modversions make the guest refuse them loudly if that ever fails."""
    digest = hashlib.sha256(f"{kernel_version}\0{recipe_text}".encode())
    return digest.hexdigest()[:16]


def kbuild(modules: Iterable[str]) -> str:
    """The Kbuild file: upstream's `obj-$(CONFIG_X)` lines, one composite where needed."""
    lines: list[str] = []
    for name in modules:
        module = MODULES[name]
        lines.append(f"obj-$({module.config}) += {name}.o")
        objects = [obj for obj, _ in module.sources]
        if objects != [name]:
            lines.append(f"{name}-y := {' '.join(o + '.o' for o in objects)}")
    return "\n".join(lines) + "\n"


def vermagic(ko: bytes) -> str:
    """The module's vermagic string (kernel release and build options)."""
    found = re.search(rb"vermagic=([^\0]*)\0", ko)
    if found is None:
        raise RuntimeError("module has no vermagic")
    return found.group(1).decode()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _apt_show(package: str) -> dict[str, str]:
    """The candidate version's fields of `package` in apt, {} if apt does not know it."""
    out = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True
    )
    fields: dict[str, str] = {}
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        key, sep, value = line.partition(": ")
        if sep and not line.startswith(" "):
            fields.setdefault(key, value)
    return fields


@dataclass(frozen=True)
class _Packages:
    version: str  # the Debian version shared by headers, kbuild and source
    debs: tuple[str, ...]  # name=version for apt-get download
    compiler_package: str


def _packages(kernel_version: str) -> _Packages:
    headers = f"linux-headers-{kernel_version}"
    fields = _apt_show(headers)
    if not fields:
        raise RuntimeError(
            f"no {headers} package in apt: out-of-tree modules need a Debian kernel "
            "(on bookworm, bookworm-backports or bookworm-security)"
        )
    version = fields["Version"]
    depends = [d.split()[0] for d in re.split(r"[,|]", fields.get("Depends", "")) if d.strip()]
    extra = [d for d in depends if d.startswith(("linux-headers-", "linux-kbuild-"))]
    compilers = [d for d in depends if re.fullmatch(r"gcc-\d+", d)]
    series = ".".join(kernel_version.split(".")[:2])
    debs = [headers, *extra, f"linux-source-{series}"]
    return _Packages(version, tuple(f"{d}={version}" for d in debs), ",".join(compilers))


def _check_compiler(headers: Path, package: str) -> None:
    """Build with the compiler the kernel was built with: same program, same GCC release."""
    config = (headers / ".config").read_text()
    found = re.search(r'^CONFIG_CC_VERSION_TEXT="(.*)"$', config, re.M)
    if found is None:
        raise RuntimeError(f"{headers}/.config has no CONFIG_CC_VERSION_TEXT")
    wanted = found.group(1)
    program = wanted.split()[0]
    if shutil.which(program) is None:
        raise RuntimeError(f"the kernel was built with {program}; install {package or 'it'}")
    have = subprocess.run(
        [program, "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    if have.split()[-1] != wanted.split()[-1]:
        raise RuntimeError(f"the kernel was built with {wanted!r}, {program} is {have!r}")
    if have != wanted:
        log.warning("compiler %r, kernel built with %r (same release)", have, wanted)


def _unpack(packages: _Packages, root: Path) -> None:
    os.chmod(root, 0o755)  # apt-get download runs as _apt where it can
    subprocess.run(
        ["apt-get", "download", "-q", *packages.debs],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for deb in sorted(root.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        deb.unlink()


def _extract_sources(root: Path, build: Path) -> dict[str, str]:
    """Only the needed files out of the source tarball, fixed up; {tree path: sha256}."""
    (tarball,) = (root / "usr/src").glob("linux-source-*.tar.*")
    top = tarball.name.split(".tar.")[0]
    paths = sorted({path for m in MODULES.values() for _, path in m.sources})
    members = [f"{top}/{p}" for p in paths]
    # --occurrence: stop reading the 1 GB stream once every member is out.
    subprocess.run(
        ["tar", "-xf", str(tarball), "--occurrence", "-C", str(root), *members], check=True
    )
    tree = root / top
    for path, old, new in FIXUPS:
        text = (tree / path).read_text()
        if text.count(old) != 1:
            raise RuntimeError(f"{path} no longer has {old!r} exactly once; update FIXUPS")
        (tree / path).write_text(text.replace(old, new))
    for module in MODULES.values():
        for obj, path in module.sources:
            shutil.copy2(tree / path, build / f"{obj}.c")
    return {p: _sha256(tree / p) for p in paths}


def _headers_dir(root: Path, kernel_version: str) -> Path:
    """The unpacked headers, pointed at their unpacked common half (Debian's Makefile
    includes it by absolute path)."""
    headers = root / "usr/src" / f"linux-headers-{kernel_version}"
    makefile = headers / "Makefile"
    makefile.write_text(makefile.read_text().replace(" /usr/src/", f" {root}/usr/src/"))
    return headers


def _build(kernel_version: str, packages: _Packages, work: Path) -> dict[str, str]:
    root, build = work / "root", work / "build"
    root.mkdir()
    build.mkdir()
    _unpack(packages, root)
    headers = _headers_dir(root, kernel_version)
    _check_compiler(headers, packages.compiler_package)
    sources = _extract_sources(root, build)
    (build / "Kbuild").write_text(kbuild(MODULES))
    configs = [f"{m.config}=m" for m in MODULES.values()]
    cmd = ["make", "-C", str(headers), f"M={build}", *configs, f"-j{os.cpu_count() or 1}"]
    done = subprocess.run([*cmd, "modules"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {', '.join(MODULES)} failed:\n{done.stdout}{done.stderr}")
    log.debug("%s", done.stdout)
    for name in MODULES:
        # As Debian's own modules (INSTALL_MOD_STRIP): no debug info, BTF kept.
        subprocess.run(["strip", "--strip-debug", str(build / f"{name}.ko")], check=True)
        magic = vermagic((build / f"{name}.ko").read_bytes())
        if magic.split()[0] != kernel_version:
            raise RuntimeError(f"{name}.ko has vermagic {magic!r}, not for {kernel_version}")
    return sources


def _cached(entry: Path) -> dict[str, Path] | None:
    """The entry's modules if its manifest is there and every .ko is intact."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    hashes: dict[str, str] = manifest.get("ko", {})
    if set(hashes) != set(MODULES):
        return None
    found = {name: entry / f"{name}.ko" for name in hashes}
    intact = all(p.is_file() and _sha256(p) == hashes[n] for n, p in found.items())
    return found if intact else None


def _publish(result: Path, entry: Path) -> None:
    """Move a finished build into place in one rename, so a concurrent reader sees all
    of it or nothing; a complete entry that another build put there first is kept."""
    try:
        result.rename(entry)
    except OSError:
        if _cached(entry) is not None:
            return
        shutil.rmtree(entry)
        result.rename(entry)


def build_out_of_tree(
    kernel_version: str,
    names: Iterable[str] = tuple(MODULES),
    *,
    directory: Path,
) -> dict[str, Path]:
    """{module name: .ko path} for `names`, built for Debian's `kernel_version`
    (e.g. 6.12.117+deb12-amd64), or taken from the cache in `directory`/kmod (the
    guest image's directory, usually `guest_image.default_dir()`)."""
    wanted = list(names)
    unknown = [n for n in wanted if n not in MODULES]
    if unknown:
        raise ValueError(f"cannot build {', '.join(unknown)}; known: {', '.join(MODULES)}")
    base = directory / "kmod"
    entry = base / f"{kernel_version}-{cache_key(kernel_version, recipe())}"
    found = _cached(entry)
    if found is None:
        packages = _packages(kernel_version)
        base.mkdir(parents=True, exist_ok=True)
        log.info("building %s for %s", ", ".join(MODULES), kernel_version)
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            work = Path(tmp)
            sources = _build(kernel_version, packages, work)
            result = work / "result"
            result.mkdir()
            ko: dict[str, str] = {}
            for name in MODULES:
                shutil.copy2(work / "build" / f"{name}.ko", result / f"{name}.ko")
                ko[name] = _sha256(result / f"{name}.ko")
            manifest = {
                "kernel": kernel_version,
                "debian": packages.version,
                "sources": sources,
                "ko": ko,
            }
            (result / "manifest.json").write_text(json.dumps(manifest, indent=1))
            _publish(result, entry)
        found = _cached(entry)
        if found is None:
            raise RuntimeError(f"{entry} is not a complete module cache after building")
    return {name: found[name] for name in wanted}
