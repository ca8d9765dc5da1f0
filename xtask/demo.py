"""`xtask demo`: the real daemon serving a real QEMU guest, end to end, for a person to watch.

Runs with the venv's python (`python -m xtask.demo rng`, started by `python3 xtask demo`),
since it drives QEMU through vhost_user_core.testing. What a device's demo needs is
declared in its own pyproject.toml, so adding one needs no xtask change:

    [tool.vhost-device.demo]
    qemu-device = "vhost-user-rng-pci"     # QEMU's -device driver
    guest-script = "demo/guest.sh"         # busybox sh script run in the guest
    flags = []                             # daemon flags besides the socket's
    socket-flag = "--socket-path"          # the daemon's socket flag, and what the
    socket-suffix = "0"                    #   daemon appends to the path it listens on
    daemon-args = ["--vm", "socket={socket},uds-path={workdir}/x.uds"]
                                           # optional, instead of socket-flag and flags:
                                           #   the daemon's arguments, {socket} being the
                                           #   path given (before socket-suffix) and
                                           #   {workdir} the demo's directory (vsock)
    guest-files = "tests/x.py:function"    # optional: {name: bytes} put in the initramfs
    host = "demo/host.py:function"         # optional: (workdir) -> (extra daemon flags,
                                           #   {console text: host action}), e.g. a
                                           #   control socket in workdir the actions use
    qemu-args = ["-qmp", "unix:{workdir}/qmp.sock,server=on,wait=off"]
                                           # optional: more QEMU arguments ({workdir} is
                                           #   the demo's directory), e.g. what the host
                                           #   actions talk to
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vhost_user_core.testing.guest_image import build_image
from vhost_user_core.testing.qemu import Guest, vhost_user_device
from xtask.proc import say
from xtask.workspace import VENV, Package, discover, find

SOCKET_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_KEYS = {
    "qemu-device",
    "guest-script",
    "flags",
    "socket-flag",
    "socket-suffix",
    "daemon-args",
    "guest-files",
    "host",
    "qemu-args",
}
HostSide = Callable[[Path], tuple[list[str], dict[str, Callable[[], None]]]]


def _no_files() -> dict[str, bytes]:
    return {}


def _no_host(workdir: Path) -> tuple[list[str], dict[str, Callable[[], None]]]:
    return [], {}


@dataclass(frozen=True)
class Demo:
    """What one device needs for the demo; the running and checking is shared."""

    #: QEMU -device driver, e.g. vhost-user-rng-pci.
    qemu_device: str
    #: Shell script (busybox) run in the guest; its output is the demo.
    script: str
    #: Extra daemon flags besides the socket's.
    flags: list[str] = field(default_factory=list)
    #: The daemon's socket flag, and what it appends to the path (upstream's naming:
    #: multi-socket devices listen on <path>0 .. <path><count-1>; sound on <path>).
    socket_flag: str = "--socket-path"
    socket_suffix: str = "0"
    #: Programs the guest script runs, put at the root of its initramfs.
    files: Callable[[], dict[str, bytes]] = _no_files
    #: Host actions at guest console markers, and the daemon flags they need.
    host: HostSide = _no_host
    #: More QEMU arguments, "{workdir}" standing for the demo's directory.
    qemu_args: list[str] = field(default_factory=list)
    #: The daemon's whole argument list instead of socket_flag and flags, for a daemon
    #: whose socket is a field of a larger argument (vsock's `--vm socket=PATH,...`).
    daemon_args: list[str] | None = None

    def daemon_argv(self, base: Path, workdir: Path) -> list[str]:
        """The daemon's arguments (before the host side's flags) for socket path `base`."""
        if self.daemon_args is None:
            return [self.socket_flag, str(base), *self.flags]
        fields = {"socket": str(base), "workdir": str(workdir)}
        return [arg.format(**fields) for arg in self.daemon_args]

    @classmethod
    def of(cls, package: Package) -> Demo:
        """The package's `[tool.vhost-device.demo]`; a LookupError if it has none."""
        table: dict[str, Any] | None = package.demo
        if table is None:
            raise LookupError(f"{package.rel} declares no [tool.vhost-device.demo]")
        unknown = set(table) - _KEYS
        if unknown or "qemu-device" not in table or "guest-script" not in table:
            raise LookupError(
                f"{package.rel}: [tool.vhost-device.demo] needs qemu-device and guest-script"
                + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else "")
            )
        files, host = table.get("guest-files"), table.get("host")
        daemon_args = table.get("daemon-args")
        if daemon_args is not None and ({"flags", "socket-flag"} & set(table)):
            raise LookupError(
                f"{package.rel}: [tool.vhost-device.demo] daemon-args replaces flags and "
                "socket-flag; give one or the other"
            )
        return cls(
            qemu_device=str(table["qemu-device"]),
            script=(package.path / str(table["guest-script"])).read_text(),
            flags=[str(flag) for flag in table.get("flags", [])],
            socket_flag=str(table.get("socket-flag", "--socket-path")),
            socket_suffix=str(table.get("socket-suffix", "0")),
            files=_load_function(package.path, str(files)) if files else _no_files,
            host=_load_function(package.path, str(host)) if host else _no_host,
            qemu_args=[str(arg) for arg in table.get("qemu-args", [])],
            daemon_args=None if daemon_args is None else [str(arg) for arg in daemon_args],
        )


def _load_function(root: Path, spec: str) -> Callable[..., Any]:
    """`path/to/file.py:function`, loaded by path (a test helper is no installed module)."""
    path, sep, name = spec.partition(":")
    if not sep:
        raise LookupError(f"guest-files {spec!r} is not PATH.py:FUNCTION")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, root / path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # its dataclasses look their module up there
    module_spec.loader.exec_module(module)
    function: Callable[..., Any] = getattr(module, name)
    return function


def _wait_for(path: Path, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while not path.exists():
        if daemon.poll() is not None:
            raise SystemExit(f"demo: the daemon exited with status {daemon.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {path} did not appear within {SOCKET_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _stop(daemon: subprocess.Popen[bytes], socket: Path) -> list[str]:
    """SIGTERM, then the checks a service manager relies on: status 0, socket removed."""
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        return [f"the daemon ignored SIGTERM for {STOP_TIMEOUT:.0f} s"]
    problems = [] if rc == 0 else [f"the daemon exited with status {rc} after SIGTERM"]
    if socket.exists():
        problems.append(f"the daemon left {socket} behind")
    return problems


def run_demo(name: str, demo: Demo, say: Callable[[str], None]) -> int:
    daemon_bin = VENV / "bin" / f"vhost-device-{name}"
    with tempfile.TemporaryDirectory(prefix=f"xtask-demo-{name}-") as tmp:
        base = Path(tmp) / f"{name}.sock"
        socket = Path(f"{base}{demo.socket_suffix}")
        host_flags, on_console = demo.host(Path(tmp))
        args = [*demo.daemon_argv(base, Path(tmp)), *host_flags]
        say(f"starting {daemon_bin.name} {' '.join(args)}")
        daemon = subprocess.Popen([str(daemon_bin), *args])
        try:
            _wait_for(socket, daemon)
            say(f"booting a QEMU guest with {demo.qemu_device} on {socket}")
            devices = vhost_user_device(socket, demo.qemu_device)
            devices += [arg.replace("{workdir}", tmp) for arg in demo.qemu_args]
            result = Guest(build_image()).run(
                demo.script, devices=devices, extra_files=demo.files(), on_console=on_console
            )
            console = result.console_output.replace("\r", "")
            print(console, end="" if console.endswith("\n") else "\n", flush=True)
            problems = [] if result.rc == 0 else [f"the guest script exited with {result.rc}"]
        finally:
            problems_at_stop = (
                _stop(daemon, socket)
                if daemon.poll() is None
                else [f"the daemon died during the demo (status {daemon.returncode})"]
            )
        problems += problems_at_stop
    for problem in problems:
        say(f"FAILED: {problem}")
    if not problems:
        say("daemon stopped cleanly on SIGTERM (status 0, socket removed)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    packages = discover()
    parser = argparse.ArgumentParser(prog="python -m xtask.demo")
    parser.add_argument("device", choices=sorted(p.short for p in packages if p.demo))
    package = find(parser.parse_args(argv).device, packages)
    return run_demo(package.short, Demo.of(package), say)


if __name__ == "__main__":
    sys.exit(main())
