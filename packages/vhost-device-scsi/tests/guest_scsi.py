"""Runs inside the guest (the host's Python and Debian's lsscsi, sg3-utils and
util-linux over the 9p root): finds the virtio-scsi disks by size, and prints one
`key: value` line per fact for the host to check: lsscsi's view, each disk's md5, the
SCSI tools' answers, a written and re-read pattern, the read-only disk's refusals and
discards. Argument: the sizes of the disks A (rw, 2 request queues), B (rw) and R
(read-only, 1 request queue), in bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

MIB = 1 << 20


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def fact(key: str, value: object) -> None:
    print(f"{key}: {value}", flush=True)


def disks(count: int) -> dict[int, str]:
    """size → /dev/sdX, once `count` disks of vendor vhost-py have appeared."""
    deadline = time.monotonic() + 90
    found: dict[int, str] = {}
    while time.monotonic() < deadline:
        found = {}
        for block in Path("/sys/block").glob("sd*"):
            vendor = (block / "device/vendor").read_text().strip()
            if vendor == "vhost-py":
                found[int((block / "size").read_text()) * 512] = f"/dev/{block.name}"
        if len(found) == count and all(os.path.exists(p) for p in found.values()):
            return found
        time.sleep(0.3)
    return found


def md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def read_at(dev: str, offset: int, length: int) -> bytes:
    """`length` bytes at `offset`, read past the page cache (O_DIRECT, aligned)."""
    import mmap

    buf = mmap.mmap(-1, length)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        done = 0
        while done < length:
            n = os.preadv(fd, [memoryview(buf)[done:]], offset + done)
            if n <= 0:
                break
            done += n
        return bytes(buf[:done])
    finally:
        os.close(fd)


def sg_of(dev: str) -> str:
    name = Path(dev).name
    (sg,) = Path(f"/sys/block/{name}/device/scsi_generic").iterdir()
    return f"/dev/{sg.name}"


def main(size_a: int, size_b: int, size_r: int) -> int:
    found = disks(3)
    fact("disks", len(found))
    a, b, r = found[size_a], found[size_b], found[size_r]
    lsscsi = sh("lsscsi", "-s").stdout
    for line in lsscsi.splitlines():
        fact("lsscsi", " ".join(line.split()))
    for name, dev in (("a", a), ("b", b), ("r", r)):
        block = Path("/sys/block") / Path(dev).name
        fact(f"{name}-ro", (block / "ro").read_text().strip())
        fact(f"{name}-model", (block / "device/model").read_text().strip())
        fact(f"{name}-queues", len(list((block / "mq").iterdir())))
        fact(f"{name}-md5", md5(dev))
        image = os.environ.get(f"IMAGE_{name.upper()}")
        if image:
            want, bad = Path(image).read_bytes(), []
            for off in range(0, len(want), 64 * 1024):
                got = read_at(dev, off, 64 * 1024)
                if got != want[off : off + 64 * 1024]:
                    first = next(i for i in range(len(got)) if got[i] != want[off + i])
                    bad.append(f"{off + first}")
            fact(f"{name}-direct-mismatches", " ".join(bad[:20]) or "none")
            with open(dev, "rb") as f:
                cached = f.read()
            diff = [
                i for i in range(0, len(want), 4096) if cached[i : i + 4096] != want[i : i + 4096]
            ]
            fact(f"{name}-cached", f"{len(cached)} bytes, pages differing: {diff[:20]}")
        fact(f"{name}-discard-max", (block / "queue/discard_max_bytes").read_text().strip())
        fact(f"{name}-rotational", (block / "queue/rotational").read_text().strip())
    # The SCSI tools through SG_IO, on disk A.
    sg = sg_of(a)
    for page in ("0x00", "0x80", "0x83", "0xb0", "0xb1", "0xb2"):
        run = sh("sg_vpd", f"--page={page}", "--hex", sg)
        fact(f"vpd-{page}", f"rc={run.returncode} {' '.join(run.stdout.split())}")
    run = sh("sg_vpd", "--page=0x80", sg)
    fact("serial", run.stdout.split(":")[-1].strip())
    run = sh("sg_inq", sg)
    fact(
        "inq-vendor",
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in run.stdout.splitlines()
                if "Vendor identification" in ln
            ),
            "?",
        ),
    )
    run = sh("sg_readcap", "--long", sg)
    fact("readcap", " ".join(run.stdout.split()))
    run = sh("sg_raw", "-r", "64", sg, "c0", "00", "00", "00", "00", "00")
    fact("sg-raw-c0", f"rc={run.returncode} {' '.join((run.stdout + run.stderr).split())}")
    run = sh("sg_opcodes", "--no-inquiry", sg)
    fact("opcodes-rc", run.returncode)
    # A pattern written through the block layer lands in the image after sync.
    pattern = bytes(((i * 31) ^ (i >> 9)) & 0xFF for i in range(MIB))
    Path("/tmp/pattern").write_bytes(pattern)
    run = sh("dd", "if=/tmp/pattern", f"of={a}", "bs=64k", "seek=16", "oflag=direct", "conv=fsync")
    fact("dd-write-rc", run.returncode)
    sh("sync")
    back = read_at(a, MIB, MIB)
    fact("reread-ok", back == pattern)
    if back != pattern:
        first = next(i for i in range(MIB) if back[i] != pattern[i])
        fact("reread-first-difference", f"{first} of {len(back)}")
    # The read-only disk refuses writes: the block layer (WP from MODE SENSE) and the
    # device itself (WRITE(10) through SG_IO).
    run = sh("dd", "if=/tmp/pattern", f"of={r}", "bs=4k", "count=1", "oflag=direct")
    fact("ro-dd-rc", run.returncode)
    zero = "/tmp/zero512"
    Path(zero).write_bytes(bytes(512))
    run = sh(
        "sg_raw",
        "-s",
        "512",
        "-i",
        zero,
        sg_of(r),
        "2a",
        "00",
        "00",
        "00",
        "00",
        "00",
        "00",
        "00",
        "01",
        "00",
    )
    fact("ro-sg-write", f"rc={run.returncode} {' '.join((run.stdout + run.stderr).split())}")
    # Discard: blkdiscard (the kernel's UNMAP) on A, sg_unmap on B.
    run = sh("blkdiscard", "--offset", str(4 * MIB), "--length", str(2 * MIB), a)
    fact("blkdiscard-rc", f"{run.returncode} {run.stderr.strip()}")
    run = sh("sg_unmap", "--lba=4096", "--num=2048", sg_of(b))
    fact("sg-unmap-rc", f"{run.returncode} {run.stderr.strip()}")
    fact("discarded-zero", read_at(a, 4 * MIB, 2 * MIB) == bytes(2 * MIB))
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(x) for x in sys.argv[1:4])))
