"""vhost-device-gpio serving real Linux guests (gpio-virtio, kernel 6.12) through QEMU's
vhost-user-gpio-pci, under TCG. The guest side is guest/gpio_test.c on the GPIO v2
character-device uAPI; the test drives the mock chip's inputs through --mock-control
when the guest says it waits. Two boots on one daemon: the second is the reconnect."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from gpio_guest import drive, guest_files

from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.qemu import Guest, vhost_user_device

pytestmark = pytest.mark.guest

SCRIPT = """
chip=$(ls /dev/gpiochip* | head -n 1)
/gpio_test info "$chip"
/gpio_test output "$chip" 1
/gpio_test edges "$chip" 2 2
"""


def test_guest_names_output_edges_and_reconnect(guest: Guest, tmp_path: Path) -> None:
    control, base = tmp_path / "ctl", tmp_path / "gpio.sock"
    argv = [sys.executable, "-m", "vhost_device_gpio.main", "-s", str(base), "-l", "s8"]
    sock0 = Path(f"{base}0")
    with daemon_process(
        [*argv, "--mock-control", str(control)], log=tmp_path / "log", sockets=[sock0]
    ):
        for _boot in range(2):  # the second: a fresh device, line 2 released and low again
            result = guest.run(
                SCRIPT,
                devices=vhost_user_device(sock0, "vhost-user-gpio-pci"),
                extra_files=guest_files(),
                on_console={
                    "EDGE-READY line=2": lambda: drive(control, 0, 2, 1),
                    "EDGE line=2 type=rising": lambda: drive(control, 0, 2, 0),
                },
                timeout=180,
            )
            out = result.script_output
            assert result.rc == 0, out
            assert re.search(r"^CHIP name=gpiochip\d+ label=\S+ lines=8$", out, re.M), out
            for i in range(8):
                assert f"LINE {i} name=gpio{i}\n" in out + "\n", out
            assert "OUTPUT line=1 read1=1 read0=0" in out, out
            assert "EDGE line=2 type=rising\nEDGE line=2 type=falling" in out, out
    log = (tmp_path / "log").read_text()
    assert "mock0 line 1: value 1" in log and "mock0 line 2: edges both" in log
