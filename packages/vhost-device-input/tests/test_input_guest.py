"""vhost-device-input serving a real Linux guest: QEMU 10's vhost-user-input-pci and
the virtio_input driver, two sockets (a sim tablet and a sim keyboard) in one boot of a
guest on this machine's root (`HostRootGuest`). The guest reads its evdev nodes with
the EVIOCG* ioctls (python-evdev), writes Caps Lock's LED (the statusq), and the host,
once the LED line reaches the events socket, sends frames that must arrive in order."""

from __future__ import annotations

import re
import socket
import sys
import threading
from pathlib import Path

import pytest

from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

TABLET = b"EV_ABS ABS_X 100\nEV_ABS ABS_Y 200\nEV_SYN SYN_REPORT 0\n3 0 32767\n0 0 0\n"
KEYBOARD = b"EV_KEY KEY_A 1\nEV_SYN SYN_REPORT 0\nEV_KEY KEY_A 0\nEV_SYN SYN_REPORT 0\n"

GUEST_SCRIPT = r"""
exec >"$OUTPORT" 2>&1
ls /sys/class/input /dev/input; dmesg | grep -i -e input -e virtio | tail -20
"$PYTHON" "$PROGRAM" 2
"""


def _feed(base: Path, led_lines: list[str], stop: threading.Event) -> None:
    """Wait for the guest's LED write on the keyboard's events socket, then send."""
    keyboard, tablet = (socket.socket(socket.AF_UNIX) for _ in range(2))
    with keyboard, tablet:
        tablet.connect(f"{base}0.events")
        keyboard.connect(f"{base}1.events")
        keyboard.settimeout(1)
        buffered = b""
        while not stop.is_set() and b"\n" not in buffered:
            try:
                buffered += keyboard.recv(256)
            except TimeoutError:
                continue
        led_lines.extend(buffered.decode().splitlines())
        tablet.sendall(TABLET)
        keyboard.sendall(KEYBOARD)
        while not stop.wait(0.1):
            pass


def test_guest_sees_the_devices_their_events_and_writes_leds(
    guest_image: GuestImage, tmp_path: Path
) -> None:
    base = tmp_path / "input.sock"
    argv = [sys.executable, "-m", "vhost_device_input.main", "-s", str(base)]
    argv += ["-e", "sim:tablet,sim:keyboard"]
    sockets = [Path(f"{base}0"), Path(f"{base}1")]
    led_lines: list[str] = []
    stop = threading.Event()
    with daemon_process(argv, log=tmp_path / "daemon.log", sockets=sockets):
        feeder = threading.Thread(target=_feed, args=(base, led_lines, stop), daemon=True)
        feeder.start()
        try:
            guest = HostRootGuest(guest_image, workdir=tmp_path)
            result = guest.run(
                ["/bin/sh", "-c", GUEST_SCRIPT],
                cwd=tmp_path,
                env={
                    "PYTHON": sys.executable,
                    "PROGRAM": str(Path(__file__).parent / "guest_input.py"),
                },
                modules=[ModuleSpec.parse("virtio_input"), ModuleSpec.parse("evdev")],
                devices=[
                    *vhost_user_device(sockets[0], "vhost-user-input-pci"),
                    *vhost_user_device(sockets[1], "vhost-user-input-pci"),
                ],
            )
        finally:
            stop.set()
            feeder.join(timeout=5)
    output = result.output_bytes.decode(errors="replace")
    shown = output + "\n--- console ---\n" + result.console_output[-3000:]
    assert result.rc == 0, shown
    got = dict(re.findall(r"^([a-z0-9-]+): (.*)$", output, re.M))
    assert got["tablet-name"] == "vhost-device-input sim tablet", shown
    assert got["tablet-uniq"] == "sim-tablet", shown
    assert got["tablet-ids"] == "0x6 0x627 0x3 0x1", shown
    assert got["tablet-types"] == "[1, 3]", shown
    assert got["tablet-props"] == "[1]", shown  # INPUT_PROP_DIRECT: upstream lacks PROP_BITS
    assert got["tablet-abs-0"] == "0 32767 0 0 100", shown  # upstream lacks ABS_INFO
    assert got["tablet-abs-1"] == "0 32767 0 0 0", shown
    assert got["keyboard-ids"] == "0x6 0x627 0x1 0x1", shown
    assert got["keyboard-types"] == "[1, 4, 17]", shown  # KEY MSC LED
    assert got["keyboard-codes-17"] == "3 [0, 1, 2]", shown
    assert led_lines == ["EV_LED LED_CAPSL 1"], shown
    assert got["tablet-events"] == "3/0/100 3/1/200 0/0/0 3/0/32767 0/0/0", shown
    # the guest's own LED write comes first: the input core echoes it to evdev readers
    assert got["keyboard-events"] == "17/1/1 1/30/1 0/0/0 1/30/0 0/0/0", shown
