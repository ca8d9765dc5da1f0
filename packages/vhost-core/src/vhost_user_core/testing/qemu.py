"""Boot the guest image under QEMU (TCG) with vhost-user devices attached.

Each boot appends a cpio archive holding /test.sh to the base initramfs (Linux unpacks
concatenated archives). The guest's console is read back as text, and whatever the
script writes to "$OUTPORT" (a virtio-serial port) as bytes.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cpio import Entry, write_newc
from .guest_image import GuestImage

EXIT_MARKER = "VHOST-TEST-EXIT="


class GuestError(RuntimeError):
    """The guest did not boot, or did not finish its script in time."""


@dataclass
class GuestResult:
    rc: int
    console_output: str
    output_bytes: bytes
    elapsed: float

    @property
    def script_output(self) -> str:
        """What the script printed: the console between the start and exit markers."""
        text = self.console_output
        start = text.find("VHOST-TEST-START")
        end = text.rfind(EXIT_MARKER)
        body = text[start + len("VHOST-TEST-START") if start >= 0 else 0 : end]
        return body.replace("\r", "").strip("\n")


def vhost_user_device(
    socket_path: str | os.PathLike[str], qemu_device: str, **props: object
) -> list[str]:
    """QEMU arguments that attach a vhost-user device served at `socket_path`."""
    chardev = f"vhu{abs(hash(os.fspath(socket_path))) % 100000}"
    extra = "".join(f",{k.replace('_', '-')}={v}" for k, v in props.items())
    return [
        "-chardev",
        f"socket,id={chardev},path={os.fspath(socket_path)}",
        "-device",
        f"{qemu_device},chardev={chardev}{extra}",
    ]


class ConsoleWatcher:
    """Tails the guest's console file while QEMU runs and fires each action once when
    its marker text appears. An action that raises fails the run after the guest ends."""

    POLL = 0.01

    def __init__(
        self,
        console: Path,
        actions: dict[str, Callable[[], None]],
        proc: subprocess.Popen[bytes],
    ) -> None:
        self.console = console
        self.pending = dict(actions)
        self.proc = proc
        self.errors: list[BaseException] = []
        self.thread: threading.Thread | None = None
        if self.pending:
            self.thread = threading.Thread(target=self._watch, name="console-watch", daemon=True)
            self.thread.start()

    def _watch(self) -> None:
        seen = ""
        while self.pending and self.proc.poll() is None:
            try:
                seen = self.console.read_text(errors="replace")
            except FileNotFoundError:
                pass
            for marker in [m for m in self.pending if m in seen]:
                action = self.pending.pop(marker)
                try:
                    action()
                except BaseException as exc:  # reported by join()
                    self.errors.append(exc)
            time.sleep(self.POLL)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.errors:
            raise GuestError(f"a console action failed: {self.errors[0]!r}") from self.errors[0]


class Guest:
    """Boots `image` once per `run()`; temporary files go to `workdir`."""

    def __init__(self, image: GuestImage, workdir: Path | None = None) -> None:
        self.image = image
        self.workdir = workdir

    def command(
        self,
        initramfs: Path,
        console: Path,
        out: Path,
        devices: list[str],
        memory: str,
        smp: int = 1,
    ) -> list[str]:
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise GuestError("qemu-system-x86_64 is not installed (python3 xtask bootstrap)")
        return [
            qemu,
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-machine",
            "q35,accel=tcg,memory-backend=mem",
            "-cpu",
            "max",
            "-smp",
            str(smp),
            "-m",
            memory,
            "-object",
            f"memory-backend-memfd,id=mem,size={memory},share=on",
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(initramfs),
            "-append",
            "console=ttyS0 quiet panic=-1 rdinit=/init",
            "-serial",
            f"file:{console}",
            "-device",
            "virtio-serial-pci",
            "-chardev",
            f"file,id=vhout,path={out}",
            "-device",
            "virtserialport,chardev=vhout,name=out",
            *devices,
        ]

    def run(
        self,
        script: str,
        *,
        devices: list[str] | None = None,
        memory: str = "512M",
        smp: int = 1,
        timeout: float = 120.0,
        extra_files: dict[str, bytes] | None = None,
        on_console: dict[str, Callable[[], None]] | None = None,
    ) -> GuestResult:
        """Boot, run `script` as /test.sh, power off. `extra_files` land in / as
        executables. `on_console` maps console text to a host action, run once (on a
        helper thread) as soon as the guest prints that text: how a script asks the host
        to do something at a given point, e.g. flip a switch while it plays."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            work = Path(tmp)
            entries = [Entry.executable("test.sh", script.encode())]
            entries += [Entry.executable(name, data) for name, data in (extra_files or {}).items()]
            initramfs = work / "initramfs.gz"
            initramfs.write_bytes(
                self.image.initramfs.read_bytes()
                + gzip.compress(write_newc(entries), compresslevel=1)
            )
            console, out = work / "console.log", work / "out.bin"
            cmd = self.command(initramfs, console, out, devices or [], memory, smp)
            start = time.monotonic()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            watcher = ConsoleWatcher(console, on_console or {}, proc)
            try:
                qemu_out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                tail = console.read_text(errors="replace")[-3000:] if console.exists() else ""
                raise GuestError(
                    f"guest did not finish in {timeout} s; console tail:\n{tail}"
                ) from None
            finally:
                watcher.join()
            elapsed = time.monotonic() - start
            text = console.read_text(errors="replace") if console.exists() else ""
            data = out.read_bytes() if out.exists() else b""
        marker = text.rfind(EXIT_MARKER)
        if marker < 0:
            raise GuestError(
                f"guest ended without running its script (QEMU status "
                f"{proc.returncode}): {qemu_out.decode(errors='replace')}\n"
                f"console:\n{text[-3000:]}"
            )
        rc = int(text[marker + len(EXIT_MARKER) :].split()[0])
        return GuestResult(rc, text, data, elapsed)
