"""vhost-device-i2c serving a real Linux guest: QEMU 10's vhost-user-i2c-pci and the
i2c-virtio driver, exercised with Debian's i2c-tools (the programs users run) in a
guest on this machine's root (`HostRootGuest`), twice against one daemon."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

#: Finds the virtio adapter's number, then runs each check, printing `name: output rc`.
PRELUDE = r"""
exec >"$OUTPORT" 2>&1
for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in *virtio*) bus=${d##*i2c-};; esac
done
echo "bus=$bus"
check() { name=$1; shift; out=$("$@" 2>&1); rc=$?; echo "$name: $(echo $out) rc=$rc"; }
"""

FIRST_BOOT = r"""
i2cdetect -y "$bus"
check set-byte i2cset -y "$bus" 0x50 0x10 0xab
check get-byte i2cget -y "$bus" 0x50 0x10
check set-word i2cset -y "$bus" 0x50 0x20 0x1234 w
check get-word i2cget -y "$bus" 0x50 0x20 w
check set-block i2cset -y "$bus" 0x50 0x30 1 2 3 4 5 i
check get-block i2cget -y "$bus" 0x50 0x30 i 5
check xfer-write i2ctransfer -y "$bus" w5@0x20 0x00 0xde 0xad 0xbe 0xef
check xfer-read i2ctransfer -y "$bus" w1@0x20 0x00 r4
check xfer-seq i2ctransfer -y "$bus" w1@0x20 0x02 r2@0x20 w1@0x50 0x10 r1@0x50
check unlisted i2cget -y "$bus" 0x21 0x00
check unlisted-xfer i2ctransfer -y "$bus" w1@0x51 0x00 r1
"$PYTHON" "$TESTS/guest_plain_i2c.py" "$bus"
"""

SECOND_BOOT = r"""
i2cdetect -y "$bus"
check again i2ctransfer -y "$bus" w1@0x20 0x00 r4
"""


def run_guest(image: GuestImage, tmp_path: Path, socket: Path, script: str) -> str:
    guest = HostRootGuest(image, workdir=tmp_path)
    result = guest.run(
        ["/bin/sh", "-c", PRELUDE + script],
        cwd=tmp_path,
        env={"PYTHON": sys.executable, "TESTS": str(Path(__file__).parent)},
        modules=[ModuleSpec.parse("i2c-dev")],
        devices=vhost_user_device(socket, "vhost-user-i2c-pci"),
    )
    output = result.output_bytes.decode(errors="replace")
    assert result.rc == 0, output + result.console_output[-3000:]
    # what a failed assert shows: the script's output, then what the guest kernel said
    return f"{output}{CONSOLE}{result.console_output[-3000:]}"


CONSOLE = "\n--- guest console (tail) ---\n"


def found(output: str) -> set[int]:
    """The addresses i2cdetect's grid shows as present."""
    addrs = set()
    for line in output.split(CONSOLE)[0].splitlines():
        if m := re.match(r"^([0-7]0): (.*)$", line):
            row = int(m.group(1), 16)
            for col, cell in enumerate(m.group(2).split()):
                if re.fullmatch(r"[0-9a-f]{2}", cell):
                    addrs.add(row + col)
    return addrs


def lines(output: str) -> dict[str, str]:
    text = output.split(CONSOLE)[0]
    pairs = (line.split(":", 1) for line in text.splitlines() if re.match(r"^[a-z-]+: ", line))
    return {name: text.strip() for name, text in pairs}


def test_i2c_tools_against_the_sim_bus_and_reconnect(
    guest_image: GuestImage, tmp_path: Path
) -> None:
    base = tmp_path / "i2c.sock"
    argv = [sys.executable, "-m", "vhost_device_i2c.main", "-s", str(base), "-l", "sim:32:80"]
    socket = Path(f"{base}0")
    with daemon_process(argv, log=tmp_path / "daemon.log", sockets=[socket]):
        first = run_guest(guest_image, tmp_path, socket, FIRST_BOOT)
        assert found(first) == {0x20, 0x50}, first
        got = lines(first)
        assert got["set-byte"] == "rc=0", first
        assert got["get-byte"] == "0xab rc=0", first
        assert got["set-word"] == "rc=0", first
        assert got["get-word"] == "0x1234 rc=0", first
        assert got["set-block"] == "rc=0", first
        assert got["get-block"] == "0x01 0x02 0x03 0x04 0x05 rc=0", first
        assert got["xfer-write"] == "rc=0", first
        assert got["xfer-read"] == "0xde 0xad 0xbe 0xef rc=0", first  # repeated start
        # one transfer of four messages to two devices
        assert got["xfer-seq"] == "0xbe 0xef 0xab rc=0", first
        # the unlisted address: the guest sees the device's error (i2cget fails; i2ctransfer
        # reports that none of its messages went through)
        assert got["unlisted"] == "Error: Read failed rc=2", first
        assert got["unlisted-xfer"].startswith("Warning: only 0/2 messages were sent"), first
        # the smbus2 adapter's plain-I2C path on the guest's i2c-virtio adapter
        assert got["plain-funcs"] == "True", first
        assert got["plain-rdwr"] == "080706", first
        assert got["plain-unlisted"] == "TransferError addr=0x22", first

        second = run_guest(guest_image, tmp_path, socket, SECOND_BOOT)
        assert found(second) == {0x20, 0x50}, second
        assert lines(second)["again"] == "0xde 0xad 0xbe 0xef rc=0", second  # same EEPROM
