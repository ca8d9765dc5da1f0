"""vhost-device-scsi serving a real Linux guest: QEMU 10's vhost-user-scsi-pci with
its defaults (num_queues: one per vCPU, 2 here, param_change on) and with num_queues=1,
the virtio_scsi and sd drivers, and Debian's own tools (lsscsi, sg3-utils, dd,
blkdiscard) in one boot of a guest on this machine's root (`HostRootGuest`)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import pytest

from vhost_user_core.testing.guest_image import GuestImage
from vhost_user_core.testing.harness import daemon_process
from vhost_user_core.testing.hostroot import HostRootGuest, ModuleSpec
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

MIB = 1 << 20
SIZE_A, SIZE_B, SIZE_R = 12 * MIB, 8 * MIB, 4 * MIB

GUEST_SCRIPT = r"""
exec >"$OUTPORT" 2>&1
"$PYTHON" "$PROGRAM" "$SIZES_A" "$SIZES_B" "$SIZES_R" || echo "program-failed: $?"
dmesg | grep -i -e scsi -e " sd" | tail -30
"""


def _image(path: Path, size: int, seed: int) -> str:
    data = hashlib.shake_256(seed.to_bytes(4, "little")).digest(size)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def _allocated(path: Path, offset: int, length: int) -> int:
    """Bytes of [offset, offset+length) that hold data (SEEK_DATA / SEEK_HOLE)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        total, pos = 0, offset
        while pos < offset + length:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            if start >= offset + length:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), offset + length)
            total += end - start
            pos = end
        return total
    finally:
        os.close(fd)


def test_guest_uses_the_disks_through_virtio_scsi(guest_image: GuestImage, tmp_path: Path) -> None:
    a, b, r = tmp_path / "a.img", tmp_path / "b.img", tmp_path / "r.img"
    md5 = {"a": _image(a, SIZE_A, 1), "b": _image(b, SIZE_B, 2), "r": _image(r, SIZE_R, 3)}
    rw_sock, ro_sock = tmp_path / "rw.sock", tmp_path / "ro.sock"
    daemon = [sys.executable, "-m", "vhost_device_scsi.main"]
    with (
        daemon_process(
            [*daemon, "-s", str(rw_sock), str(a), str(b)],
            log=tmp_path / "rw.log",
            sockets=[rw_sock],
        ),
        daemon_process(
            [*daemon, "-s", str(ro_sock), "-r", "--solid-state", str(r)],
            log=tmp_path / "ro.log",
            sockets=[ro_sock],
        ),
    ):
        guest = HostRootGuest(guest_image, workdir=tmp_path)
        result = guest.run(
            ["/bin/sh", "-c", GUEST_SCRIPT],
            cwd=tmp_path,
            env={
                "PYTHON": sys.executable,
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "PROGRAM": str(Path(__file__).parent / "guest_scsi.py"),
                "SIZES_A": str(SIZE_A),
                "SIZES_B": str(SIZE_B),
                "SIZES_R": str(SIZE_R),
                "IMAGE_A": str(a),
                "IMAGE_B": str(b),
                "IMAGE_R": str(r),
            },
            modules=[ModuleSpec.parse(m) for m in ("virtio_scsi", "sd_mod", "sg")],
            devices=[
                *vhost_user_device(rw_sock, "vhost-user-scsi-pci"),  # QEMU's defaults
                *vhost_user_device(ro_sock, "vhost-user-scsi-pci,num_queues=1"),
            ],
        )
    output = result.output_bytes.decode(errors="replace")
    shown = output + "\n--- console ---\n" + result.console_output[-3000:]
    logs = "\n".join((tmp_path / n).read_text() for n in ("rw.log", "ro.log"))
    shown += "\n--- daemons ---\n" + logs[-3000:]
    assert result.rc == 0, shown
    assert "program-failed" not in output, shown
    got: dict[str, list[str]] = {}
    for key, value in re.findall(r"^([a-z0-9-]+): (.*)$", output, re.M):
        got.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in got.items()}
    assert one["disks"] == "3", shown
    # lsscsi: every LUN, its vendor, model and size (two hosts: LUN 0 and 1, then 0).
    lines = got["lsscsi"]
    assert len(lines) == 3 and all("disk vhost-py raw image 0.1" in ln for ln in lines), shown
    assert sorted(ln.split()[-1] for ln in lines) == ["12.5MB", "4.19MB", "8.38MB"], shown
    assert sorted(ln.split()[0][-4:] for ln in lines) == ["0:0]", "0:0]", "0:1]"], shown
    assert (one["a-ro"], one["b-ro"], one["r-ro"]) == ("0", "0", "1"), shown
    assert (one["a-queues"], one["r-queues"]) == ("2", "1"), shown  # request queues used
    assert (one["a-rotational"], one["r-rotational"]) == ("1", "0"), shown  # --solid-state
    for name in "abr":
        assert one[f"{name}-md5"] == md5[name], shown
        # Read again past the page cache (O_DIRECT) and through it, against the image
        # file itself (the host's /tmp shows through the guest's root).
        assert one[f"{name}-direct-mismatches"] == "none", shown
        assert one[f"{name}-cached"].endswith("pages differing: []"), shown
    assert int(one["a-discard-max"]) > 0, shown
    # The SCSI tools' answers.
    for page in ("0x00", "0x80", "0x83", "0xb0", "0xb1", "0xb2"):
        assert one[f"vpd-{page}"].startswith("rc=0 "), shown
    assert len(one["serial"]) == 20, shown
    assert one["inq-vendor"] == "vhost-py", shown
    assert "Last LBA=24575" in one["readcap"] and "Logical block length=512" in one["readcap"]
    assert "lbpme=1" in one["readcap"] and "lbprz=1" in one["readcap"], shown
    assert (
        one["sg-raw-c0"].startswith("rc=") and "Invalid command operation code" in one["sg-raw-c0"]
    ), shown
    assert one["opcodes-rc"] == "0", shown
    # Writes reach the image file, the read-only disk refuses them, discards free blocks.
    assert (one["dd-write-rc"], one["reread-ok"]) == ("0", "True"), shown
    pattern = bytes(((i * 31) ^ (i >> 9)) & 0xFF for i in range(MIB))
    assert a.read_bytes()[MIB : 2 * MIB] == pattern
    assert one["ro-dd-rc"] != "0", shown
    assert "Data Protect" in one["ro-sg-write"] and "Write protected" in one["ro-sg-write"], shown
    assert hashlib.md5(r.read_bytes()).hexdigest() == md5["r"]
    assert one["blkdiscard-rc"].startswith("0"), shown
    assert one["sg-unmap-rc"].startswith("0"), shown
    assert one["discarded-zero"] == "True", shown
    assert _allocated(a, 4 * MIB, 2 * MIB) == 0  # holes punched
    assert _allocated(b, 2 * MIB, MIB) == 0
    assert a.read_bytes()[4 * MIB : 6 * MIB] == bytes(2 * MIB)
