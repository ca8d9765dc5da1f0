"""The nested backend in a real terminal: tmux runs the daemon in a pane, send-keys
types, capture-pane reads what the guest (the driver played here) wrote; Ctrl-C reaches
the guest, a resize reaches it as RESIZE, and the escape (or SIGTERM) ends the daemon
with the terminal's settings as they were before (`stty -g` before and after)."""

from __future__ import annotations

import os
import shlex
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from console_driver import RESIZE, ConsoleDriver

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.harness import wait_for_socket


@dataclass
class Pane:
    tmux: list[str]
    tmp: Path

    def keys(self, *keys: str, literal: bool = False) -> None:
        flags = ["-l"] if literal else []
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *flags, *keys], check=True)

    def screen(self) -> str:
        run = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True
        )
        return run.stdout

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen()):
            assert time.monotonic() < deadline, f"{text!r} not on the screen:\n{screen}"
            time.sleep(0.05)
        return screen

    def daemon_pid(self) -> int:
        shell = subprocess.run(
            [*self.tmux, "display", "-p", "-t", "t", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        return int(children[0])

    def stty(self) -> str:
        """The pane's terminal settings now, read from outside."""
        tty = subprocess.run(
            [*self.tmux, "display", "-p", "-t", "t", "#{pane_tty}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return subprocess.run(["stty", "-F", tty, "-a"], capture_output=True, text=True).stdout

    def settings(self, which: str) -> str:
        path = self.tmp / which
        deadline = time.monotonic() + 10
        while not path.exists() or not path.read_text():
            assert time.monotonic() < deadline, f"no {which}:\n{self.screen()}"
            time.sleep(0.05)
        return path.read_text()


@contextmanager
def nested(tmp_path: Path) -> Iterator[tuple[Pane, ConsoleDriver]]:
    base = tmp_path / "c.sock"
    daemon = shlex.join([sys.executable, "-m", "vhost_device_console.main", "-s", str(base)])
    before, after = tmp_path / "before", tmp_path / "after"
    script = f"stty -g > {before}; {daemon}; echo status=$?; stty -g > {after}; sleep 60"
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]
    env = {**os.environ, "TERM": "xterm"}
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "sh", "-c", script],
        check=True,
        env=env,
    )
    pane = Pane(tmux, tmp_path)
    try:
        wait_for_socket(f"{base}0")
        with Frontend.connect(f"{base}0") as frontend:
            yield pane, ConsoleDriver(frontend)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def test_nested_in_a_terminal(tmp_path: Path) -> None:
    with nested(tmp_path) as (pane, driver):
        packets = driver.handshake(expect=5)
        raw = pane.stty().split()
        assert "-icanon" in raw and "-isig" in raw and "-echo" in raw
        assert (packets[3][1], packets[3][3]) == (RESIZE, struct.pack("<HH", 24, 80))
        driver.send(driver.tx, b"\x1b[1mguest says hello\x1b[0m\r\n")
        pane.wait_for("guest says hello")
        driver.post_writable(driver.rx, 64, 8)
        pane.keys("ls -l", literal=True)
        pane.keys("C-c")  # raw mode: a byte for the guest, not SIGINT
        got = b""
        while len(got) < 6:
            got += b"".join(driver.written(driver.rx, 1))
        assert got == b"ls -l\x03"
        subprocess.run(
            [*pane.tmux, "resize-window", "-t", "t", "-x", "100", "-y", "30"], check=True
        )
        ((_, event, _, size),) = driver.packets(1)
        assert (event, size) == (RESIZE, struct.pack("<HH", 30, 100))
        pane.keys("C-]", "C-]")  # one Ctrl-] for the guest
        assert driver.written(driver.rx, 1) == [b"\x1d"]
        pane.keys("C-]", "x")  # not the escape: both bytes for the guest
        got = b""
        while len(got) < 2:
            got += b"".join(driver.written(driver.rx, 1))
        assert got == b"\x1dx"
        pane.keys("C-]", "q")
        pane.wait_for("status=0")
        assert pane.settings("after") == pane.settings("before")
        cooked = pane.stty().split()
        assert "icanon" in cooked and "isig" in cooked and "echo" in cooked


def test_sigterm_restores_the_terminal(tmp_path: Path) -> None:
    with nested(tmp_path) as (pane, driver):
        driver.handshake(expect=5)
        os.kill(pane.daemon_pid(), signal.SIGTERM)
        pane.wait_for("status=0")
        assert pane.settings("after") == pane.settings("before")
