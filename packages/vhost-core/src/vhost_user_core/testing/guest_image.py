"""The guest image: Debian's 6.12 kernel and a busybox initramfs, built without root.

The kernel package is downloaded (not installed) and unpacked into the cache directory
(kept: `hostroot` gives its guests the whole module tree), vmlinuz and the virtio
modules are taken out of it, the modules decompressed so busybox's insmod can load them, the ones
Debian leaves out built from its source (`kmodules`), and /init runs the /test.sh that
each boot appends as a second cpio archive.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import kmodules
from .cpio import Entry, write_newc

#: Modules loaded at boot, in this order after their dependencies.
DEFAULT_MODULES = (
    "virtio-rng",
    "virtio_input",
    "evdev",
    "vmw_vsock_virtio_transport",
    "virtio_snd",
    "virtio_scsi",
    "sd_mod",
    "configfs",
    "i2c-virtio",
    "i2c-dev",  # /dev/i2c-N, for busybox's i2c applets (the i2c demo)
    "gpio-virtio",
)
#: Modules in /lib/modules/<name>.ko that tests load themselves (their dependencies
#: are among DEFAULT_MODULES).
ON_DEMAND_MODULES = ("gpio-sim",)
KERNEL_PATTERN = re.compile(r"^linux-image-(6\.12\.\d+\+deb\d+-amd64)-unsigned$")
BUSYBOX = Path("/bin/busybox")

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do
    insmod "/lib/modules/$m.ko" 2>/dev/null || echo "init: insmod $m failed"
done
OUTPORT=/dev/null
for port in /sys/class/virtio-ports/*; do
    if [ "$(cat "$port/name" 2>/dev/null)" = out ]; then OUTPORT="/dev/${port##*/}"; fi
done
export OUTPORT
echo VHOST-TEST-START
sh /test.sh
echo "VHOST-TEST-EXIT=$?"
sync
poweroff -f
"""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initramfs: Path
    kernel_version: str
    #: The cache directory the image was built in, and the kernel package it came from.
    directory: Path | None = None
    package: str = ""


def default_dir() -> Path:
    env = os.environ.get("VHOST_GUEST_DIR")
    return Path(env) if env else Path.home() / ".cache" / "vhost-device-py" / "guest"


def newest_kernel_package() -> str:
    """The newest Debian 6.12 kernel in apt's lists, from whichever suite carries it."""
    out = subprocess.run(
        ["apt-cache", "search", "--names-only", "^linux-image-6.12"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [line.split(" ", 1)[0] for line in out.splitlines()]
    matches = [n for n in names if KERNEL_PATTERN.match(n)]
    if not matches:
        raise RuntimeError(
            "no linux-image-6.12.*-amd64-unsigned package in apt's lists: Debian trixie "
            "carries it, bookworm its backports and security suites (run `apt-get update`)"
        )

    def version(name: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", name))

    return max(matches, key=version)


def _modinfo_depends(ko: bytes) -> list[str]:
    found = re.search(rb"depends=([^\0]*)\0", ko)
    return [d for d in found.group(1).decode().split(",") if d] if found else []


def collect_modules(
    modroot: Path, wanted: tuple[str, ...], extra: dict[str, Path] | None = None
) -> list[tuple[str, bytes]]:
    """Decompressed modules in load order (dependencies first), from the kernel package
    or `extra` (built out of tree); all must have the kernel's vermagic."""
    index = {p.name.split(".ko")[0].replace("-", "_"): p for p in modroot.rglob("*.ko*")}
    index |= {name.replace("-", "_"): path for name, path in (extra or {}).items()}
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        path = index.get(key)
        if path is None:
            raise RuntimeError(f"module {name} is not in the kernel package")
        data = path.read_bytes()
        if path.name.endswith(".xz"):
            data = lzma.decompress(data)
        for dep in _modinfo_depends(data):
            visit(dep)
        ordered.append((key, data))

    for name in wanted:
        visit(name)
    magics = {kmodules.vermagic(data) for _, data in ordered}
    if len(magics) > 1:
        raise RuntimeError(f"modules built for different kernels: {sorted(magics)}")
    return ordered


def kernel_version(package: str) -> str:
    found = KERNEL_PATTERN.match(package)
    if found is None:
        raise RuntimeError(f"{package} is not a linux-image-6.12.*-amd64-unsigned package")
    return found.group(1)


def unpacked_kernel(directory: Path, package: str) -> Path:
    """The kernel package `package` unpacked (dpkg-deb -x) under `directory`, downloaded
    on first use; trees of other kernel packages there are removed."""
    parent = directory / "kernel"
    root = parent / package
    if (root / ".unpacked").exists():
        return root
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.iterdir():
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # apt-get download runs as _apt where it can
        subprocess.run(
            ["apt-get", "download", "-q", package], cwd=work, check=True, stdout=subprocess.DEVNULL
        )
        (deb,) = work.glob("*.deb")
        unpacked = work / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
        unpacked.rename(root)
    (root / ".unpacked").touch()
    return root


def module_dir(root: Path, version: str) -> Path:
    """Where an unpacked kernel package keeps its modules (lib/ or usr/lib/)."""
    return next(
        root / p / version
        for p in ("lib/modules", "usr/lib/modules")
        if (root / p / version).exists()
    )


def build_image(
    directory: Path | None = None,
    modules: tuple[str, ...] = DEFAULT_MODULES,
    on_demand: tuple[str, ...] = ON_DEMAND_MODULES,
) -> GuestImage:
    """Build (or reuse) the image in `directory`; idempotent. `modules` are loaded at
    boot, `on_demand` only shipped."""
    directory = directory or default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / "stamp.json"
    package = newest_kernel_package()
    version = kernel_version(package)
    extra = kmodules.build_out_of_tree(version, directory=directory)
    built = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in extra.items()}
    want = {
        "package": package,
        "modules": list(modules),
        "on_demand": list(on_demand),
        "out_of_tree": built,
        "init": INIT,
        "format": 2,
    }
    kernel, initramfs = directory / "vmlinuz", directory / "initramfs.gz"
    image = GuestImage(kernel, initramfs, version, directory, package)
    if stamp.exists() and json.loads(stamp.read_text()) == want and kernel.exists():
        return image
    unpacked = unpacked_kernel(directory, package)
    shutil.copy2(unpacked / "boot" / f"vmlinuz-{version}", kernel)
    modroot = module_dir(unpacked, version)
    loaded = collect_modules(modroot, modules, extra)
    shipped = collect_modules(modroot, modules + on_demand, extra)
    entries = [
        Entry.directory(d)
        for d in ("bin", "etc", "lib", "lib/modules", "proc", "sys", "dev", "tmp")
    ]
    entries.append(Entry.executable("bin/busybox", BUSYBOX.read_bytes()))
    entries.append(Entry.symlink("bin/sh", "busybox"))
    entries.append(Entry.executable("init", INIT.encode()))
    entries.append(Entry("etc/modules", "\n".join(n for n, _ in loaded).encode() + b"\n"))
    entries += [Entry(f"lib/modules/{name}.ko", data) for name, data in shipped]
    initramfs.write_bytes(gzip.compress(write_newc(entries), compresslevel=6))
    stamp.write_text(json.dumps(want))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description="build the QEMU guest image for tests")
    parser.add_argument("--dir", type=Path, default=None, help="default: %(default)s")
    image = build_image(parser.parse_args().dir)
    print(f"kernel {image.kernel_version}: {image.kernel}")
    print(f"initramfs: {image.initramfs}")
    from .hostroot import module_tree  # the hostkernel guests' modules, built up front

    print(f"module tree: {module_tree(image)}")


if __name__ == "__main__":
    main()
