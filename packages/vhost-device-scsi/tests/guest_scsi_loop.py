"""Runs inside the guest: a write-and-verify loop on the virtio-scsi disk of the given
size, in 4 threads (so several requests are in flight at any time), with O_DIRECT so
every block goes to the device and back. The host kills and restarts the daemon
meanwhile; any I/O error or wrong data fails the loop. Prints `loop-done: N` when all
N rounds of every thread passed."""

from __future__ import annotations

import mmap
import os
import sys
import threading
import time
from pathlib import Path

BLOCK = 256 * 1024
THREADS, SLOTS_EACH = 4, 8


def disk(size: int) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for block in Path("/sys/block").glob("sd*"):
            if int((block / "size").read_text()) * 512 == size:
                path = f"/dev/{block.name}"
                if os.path.exists(path):
                    return path
        time.sleep(0.3)
    raise SystemExit(f"no disk of {size} bytes")


def worker(dev: str, t: int, rounds: int, failures: list[str]) -> None:
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    out, back = mmap.mmap(-1, BLOCK), mmap.mmap(-1, BLOCK)
    try:
        for i in range(rounds):
            slot = t * SLOTS_EACH + i % SLOTS_EACH
            out[:] = (b"ITER%08d" % i + bytes((t, i & 0xFF))).ljust(64, b".") * (BLOCK // 64)
            if os.pwritev(fd, [out], slot * BLOCK) != BLOCK:
                raise OSError("short write")
            # Read back in two halves: 128 KiB reads are the daemon's C fast path (page
            # cached), the 256 KiB writes its Python path and pool.
            half = BLOCK // 2
            for at in (0, half):
                if os.preadv(fd, [memoryview(back)[at : at + half]], slot * BLOCK + at) != half:
                    raise OSError("short read")
            if back[:] != out[:]:
                failures.append(f"loop-mismatch: thread {t} round {i}")
                return
            if i % 10 == 0:
                print(f"round: {t} {i} at {time.monotonic():.2f}", flush=True)
    except OSError as exc:
        failures.append(f"loop-error: thread {t} round {i}: {exc}")
    finally:
        os.close(fd)


def main(size: int, rounds: int) -> int:
    dev = disk(size)
    failures: list[str] = []
    threads = [
        threading.Thread(target=worker, args=(dev, t, rounds, failures)) for t in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for failure in failures:
        print(failure, flush=True)
    if failures:
        return 1
    print(f"loop-done: {rounds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
