"""Run a command inside a Debian 6.12 guest whose root filesystem is this machine's own.

This machine's kernel has no modules, so the kernel's own simulators (i2c-stub, vcan,
uinput, snd-aloop, vsock_loopback, ...) can only be had in a guest. The guest is the
usual one (`qemu.Guest`: Debian's kernel, the busybox initramfs) with this machine's
`/` exported read-only over virtio-9p. The boot script mounts it, puts an overlay with
a tmpfs upper layer on it (so anything may be written, and nothing reaches the host;
the host's /tmp shows through, so a test may hand the guest files it made there),
mounts proc, sys, dev, run and configfs in it, binds the kernel's module tree
(`module_tree`: the kernel package's modules plus the out-of-tree builds, depmod'ed
on the host) at /lib/modules/<version>, chroots and runs the command: the same Python,
virtualenv and checkout as the host's, with the host's own `modprobe` loading the
modules a caller names (`ModuleSpec`, e.g. `i2c-stub chip_addr=0x50`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import kmodules
from .guest_image import GuestImage, collect_modules, default_dir, module_dir, unpacked_kernel
from .qemu import Guest, GuestError, GuestResult

log = logging.getLogger(__name__)

#: What the initramfs loads (busybox insmod) to mount the host's root.
ROOT_MODULES = ("9p", "9pnet_virtio", "overlay")
#: 9p's largest message: big reads of Python's files and the checkout's.
MSIZE = 512 * 1024
MOUNT_TAG = "hostroot"
#: Where the guest's mounts live in the initramfs.
LOWER, NEWROOT = "/hostroot", "/newroot"
#: The boot script prints this once the root is mounted, just before the chroot.
READY_MARKER = "HOSTROOT-READY"


class ModuleError(ValueError):
    """A module specification that cannot be parsed."""


@dataclass(frozen=True)
class ModuleSpec:
    """A kernel module and the parameters to load it with: `snd-aloop pcm_substreams=2`."""

    name: str
    params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ModuleSpec:
        words = text.split()
        if not words:
            raise ModuleError("an empty module specification")
        name, params = words[0], tuple(words[1:])
        if not all(c.isalnum() or c in "-_" for c in name):
            raise ModuleError(f"{name!r} is not a module name")
        for param in params:
            if "=" not in param or param.startswith("="):
                raise ModuleError(f"{text!r}: parameter {param!r} is not key=value")
        return cls(name, params)

    @property
    def key(self) -> str:
        """The name as the kernel knows it (dashes and underscores are the same)."""
        return self.name.replace("-", "_")

    def __str__(self) -> str:
        return " ".join((self.name, *self.params))


def module_tree(image: GuestImage, extra: Sequence[Path] = ()) -> Path:
    """A directory B holding B/lib/modules/<version>: the kernel package's modules plus,
    in updates/ (which modprobe prefers), the ones `kmodules` builds out of tree
    (gpio-sim, i2c-virtio, gpio-virtio) and the `extra` .ko files; with depmod's
    indexes. Cached beside the image, rebuilt only when the kernel package or any of
    the added modules change."""
    directory = image.directory or default_dir()
    package = image.package
    if not package:
        raise RuntimeError("the guest image does not say which kernel package it came from")
    built = kmodules.build_out_of_tree(image.kernel_version, directory=directory)
    extra = [*built.values(), *extra]
    digest = hashlib.sha256(package.encode())
    for path in sorted(extra, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    parent = directory / "hostroot-modules"
    base = parent / f"{package}-{digest.hexdigest()[:16]}"
    if (base / ".depmod").exists():
        return base
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    if not os.path.exists(depmod):
        raise RuntimeError("depmod is missing: install Debian's kmod (python3 xtask bootstrap)")
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.iterdir():
        if not stale.name.startswith(package):
            shutil.rmtree(stale, ignore_errors=True)
    work = parent / f".{base.name}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "lib" / "modules" / image.kernel_version
    source = module_dir(unpacked_kernel(directory, package), image.kernel_version)
    shutil.copytree(source, tree, copy_function=os.link, symlinks=True)
    if extra:
        (tree / "updates").mkdir()
        for path in extra:
            shutil.copy2(path, tree / "updates" / path.name)
    subprocess.run([depmod, "-b", str(work), image.kernel_version], check=True)
    shutil.rmtree(base, ignore_errors=True)
    work.rename(base)
    (base / ".depmod").touch()
    return base


def _boot_script(tree: Path, version: str) -> str:
    """The initramfs side: mount the host's root, overlay it, chroot into /hk-inner.sh."""
    modules = f"{LOWER}{tree}/lib/modules/{version}"
    return f"""set -e
for m in $(cat /hk-modules); do insmod "/hk-$m.ko"; done
mkdir -p {LOWER} /rw {NEWROOT}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize={MSIZE} {MOUNT_TAG} {LOWER}
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir={LOWER},upperdir=/rw/upper,workdir=/rw/work {NEWROOT}
for d in proc sys dev run lib/modules/{version}; do mkdir -p "{NEWROOT}/$d"; done
mount -t proc proc {NEWROOT}/proc
mount -t sysfs sys {NEWROOT}/sys
mount -t devtmpfs dev {NEWROOT}/dev
mkdir -p {NEWROOT}/dev/pts {NEWROOT}/dev/shm
mount -t devpts devpts {NEWROOT}/dev/pts
mount -t tmpfs shm {NEWROOT}/dev/shm
mount -t tmpfs -o mode=755 run {NEWROOT}/run
mount --bind {modules} {NEWROOT}/lib/modules/{version}
cp /hk-inner.sh {NEWROOT}/run/hk-inner.sh
echo {READY_MARKER}
chroot {NEWROOT} /bin/sh /run/hk-inner.sh
"""


def _inner_script(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], modules: Sequence[ModuleSpec]
) -> str:
    """The chroot side: load the modules, then exec `argv` with exactly `env` (plus
    OUTPORT, the virtio-serial port whose bytes come back as `output_bytes`)."""
    q = shlex.quote
    lines = [
        "set -e",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "if modprobe configfs 2>/dev/null || [ -d /sys/kernel/config ]; then",
        "    mount -t configfs configfs /sys/kernel/config",
        "fi",
    ]
    lines += [f"modprobe {' '.join(q(w) for w in (spec.name, *spec.params))}" for spec in modules]
    assignments = " ".join(q(f"{k}={v}") for k, v in env.items())
    lines.append(f"cd {q(str(cwd))}")
    lines.append(f'exec env -i OUTPORT="$OUTPORT" {assignments} {" ".join(q(a) for a in argv)}')
    return "\n".join(lines) + "\n"


class HostRootGuest:
    """Boots a guest on this machine's root once per `run()`."""

    def __init__(
        self,
        image: GuestImage,
        *,
        extra_modules: Sequence[Path] = (),
        memory: str = "2G",
        smp: int = 2,
        workdir: Path | None = None,
    ) -> None:
        self.image = image
        self.tree = module_tree(image, extra_modules)
        self.memory = memory
        self.smp = smp
        self.guest = Guest(image, workdir)
        #: Seconds from QEMU's start to the host's root mounted, in the last run.
        self.boot_seconds: float | None = None
        #: Why the last run booted twice (QEMU died during the first boot), if it did.
        self.retried: str | None = None

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        modules: Sequence[ModuleSpec] = (),
        devices: Sequence[str] = (),
        timeout: float = 300.0,
    ) -> GuestResult:
        """Boot, load `modules`, run `argv` in `cwd` with `env`, power off. The result's
        rc is the command's exit status (or the boot script's, if mounting failed)."""
        self.retried = None
        version = self.image.kernel_version
        loaded = collect_modules(module_dir(self.tree, version), ROOT_MODULES)
        files = {f"hk-{name}.ko": data for name, data in loaded}
        files["hk-modules"] = "\n".join(name for name, _ in loaded).encode() + b"\n"
        files["hk-inner.sh"] = _inner_script(argv, cwd, env, modules).encode()
        export = [
            "-fsdev",
            f"local,id={MOUNT_TAG},path=/,security_model=none,readonly=on,multidevs=remap",
            "-device",
            f"virtio-9p-pci,fsdev={MOUNT_TAG},mount_tag={MOUNT_TAG}",
        ]
        for attempt in (1, 2):
            started = time.monotonic()

            def ready(started: float = started) -> None:
                self.boot_seconds = time.monotonic() - started

            self.boot_seconds = None
            try:
                result = self.guest.run(
                    _boot_script(self.tree, version),
                    devices=[*export, *devices],
                    memory=self.memory,
                    smp=self.smp,
                    timeout=timeout,
                    extra_files=files,
                    on_console={READY_MARKER: ready},
                )
                break
            except GuestError as exc:
                # QEMU itself dying during the boot, before anything of the caller ran
                # (seen once: an MSI-X assertion under 2-vCPU TCG), is worth one more
                # boot; anything later is the caller's result.
                if attempt == 2 or self.boot_seconds is not None:
                    raise
                self.retried = str(exc).splitlines()[0]
                log.warning("the guest died while booting; booting once more: %s", exc)
        log.info("host-root guest ran %s in %.1f s (rc %d)", argv[0], result.elapsed, result.rc)
        return result
