"""vhost-device-rng serving a real Linux guest (virtio_rng) through QEMU's
vhost-user-rng-pci, under TCG."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vhost_user_core.testing.harness import wait_for_socket
from vhost_user_core.testing.qemu import vhost_user_device

pytestmark = pytest.mark.guest

MIB = 1 << 20

READ_HWRNG = """
cat /sys/class/misc/hw_random/rng_current
# Keep the kernel's own hwrng thread from racing our reads.
echo 0 > /sys/class/misc/hw_random/rng_quality 2>/dev/null || true
head -c {size} /dev/hwrng > /tmp/rng
wc -c < /tmp/rng
cat /tmp/rng > "$OUTPORT"
"""

TIMED_READ = """
echo 0 > /sys/class/misc/hw_random/rng_quality 2>/dev/null || true
start=$(date +%s)
head -c {size} /dev/hwrng | wc -c
end=$(date +%s)
echo "ELAPSED=$((end - start))"
"""


@contextmanager
def rng_daemon(tmp_path: Path, *flags: str) -> Iterator[Path]:
    base = tmp_path / "rng.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vhost_device_rng.main", "-s", str(base), *flags]
    )
    try:
        wait_for_socket(f"{base}0")
        yield Path(f"{base}0")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not Path(f"{base}0").exists()


def rng_device(socket: Path) -> list[str]:
    return vhost_user_device(socket, "vhost-user-rng-pci")


def assert_random_looking(data: bytes) -> None:
    counts = [0] * 256
    for byte in data:
        counts[byte] += 1
    expected = len(data) / 256
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 400, f"byte histogram far from uniform (chi2={chi2:.0f})"
    assert len(gzip.compress(data)) > 0.99 * len(data), "the data compresses: not random"


def test_guest_reads_a_mib_and_reconnects(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "entropy.bin"
    source.write_bytes(os.urandom(8 * MIB))
    with rng_daemon(tmp_path, "--rng-source", str(source)) as socket:
        first = guest.run(READ_HWRNG.format(size=MIB), devices=rng_device(socket))
        assert first.rc == 0, first.console_output
        assert "virtio_rng" in first.console_output
        data = first.output_bytes
        assert len(data) == MIB
        assert_random_looking(data)
        # Provenance: the guest's bytes are our source file's (32 random bytes cannot
        # match by chance).
        entropy = source.read_bytes()
        for offset in range(0, MIB, MIB // 16):
            assert entropy.find(data[offset : offset + 32]) >= 0

        # Same daemon, second boot: it re-listened after QEMU went away.
        second = guest.run(READ_HWRNG.format(size=64 * 1024), devices=rng_device(socket))
        assert second.rc == 0, second.console_output
        assert len(second.output_bytes) == 64 * 1024
        assert entropy.find(second.output_bytes[:32]) > 0


def test_guest_sees_the_rate_limit(guest, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 4 KiB per second, windows aligned to the first use (the driver's read at probe), so
    # the read starts anywhere in a window with at most 4 KiB left of it: 20 KiB need at
    # least four more windows, more than 3 s.
    with rng_daemon(tmp_path, "--period", "1000", "--max-bytes", "4096") as socket:
        result = guest.run(TIMED_READ.format(size=20480), devices=rng_device(socket))
    assert result.rc == 0, result.console_output
    lines = result.console_output.splitlines()
    assert "20480" in [line.strip() for line in lines]
    elapsed = int(next(line for line in lines if line.startswith("ELAPSED=")).split("=")[1])
    assert elapsed >= 3, result.console_output
