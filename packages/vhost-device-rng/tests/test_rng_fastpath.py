"""Which path serves a kick: C (`FillFromFd`) only when nothing needs counting."""

from __future__ import annotations

from pathlib import Path

from vhost_device_rng.device import RngBackend
from vhost_device_rng.ratelimit import UNLIMITED, TokenBucket
from vhost_device_rng.source import EntropySource
from vhost_user_core import FillFromFd, Vring


def backend(tmp_path: Path, capacity: int) -> RngBackend:
    path = tmp_path / "entropy"
    path.write_bytes(bytes(16))
    return RngBackend(EntropySource(str(path)), TokenBucket(capacity, 1.0))


def test_unlimited_kicks_are_served_in_c_one_fast_path_per_ring(tmp_path: Path) -> None:
    device = backend(tmp_path, UNLIMITED)
    ring = Vring(0, 64, worker=None)  # type: ignore[arg-type]
    fast = device.fast_path(ring)
    assert isinstance(fast, FillFromFd)
    assert device.fast_path(ring) is fast  # its count survives a re-registration
    assert device.bytes_served == 0


def test_a_rate_limit_or_an_exhausted_source_keeps_kicks_in_python(tmp_path: Path) -> None:
    ring = Vring(0, 64, worker=None)  # type: ignore[arg-type]
    assert backend(tmp_path, 1 << 20).fast_path(ring) is None
    device = backend(tmp_path, UNLIMITED)
    device.source.read_into(bytearray(32))  # 16 bytes, then the end of the file
    assert device.source.exhausted
    assert device.fast_path(ring) is None
