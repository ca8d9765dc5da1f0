"""The benchmarks' shared pieces: percentiles, and reaping used entries from a real
daemon process (the echo device) through the frontend."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vhost_user_core.frontend import Frontend
from vhost_user_core.testing.bench import daemon_process, idle_report, percentiles, reap_used

ECHO = [sys.executable, str(Path(__file__).with_name("echo_backend.py"))]


def test_percentiles_of_a_hundred_samples() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # unsorted on purpose
    assert percentiles(samples) == (50.5, 100.0)


def test_percentiles_of_few_samples() -> None:
    assert percentiles([3.0]) == (3.0, 3.0)
    assert percentiles([2.0, 1.0, 4.0]) == (2.0, 4.0)
    # 100 slow samples in 10 000: 99 % lie below the first of them (index 9 900)
    assert percentiles([1.0] * 9900 + [5.0] * 100) == (1.0, 5.0)
    with pytest.raises(ValueError):
        percentiles([])


def test_reap_used_from_a_daemon_process(tmp_path: Path) -> None:
    base = tmp_path / "echo.sock"
    with (
        daemon_process([*ECHO, "-s", str(base)], [f"{base}0"]) as proc,
        Frontend.connect(f"{base}0") as frontend,
    ):
        queue, _ = frontend.start_device(2, 64)
        assert frontend.ram is not None
        ram = frontend.ram
        pairs = []
        for i in range(16):
            src, dst = ram.alloc(4), ram.alloc(4)
            ram.memory.write(src, i.to_bytes(4, "little"))
            pairs.append((src, dst))
        for _ in range(3):  # rounds, as a benchmark posts them
            for src, dst in pairs:
                queue.driver.add([(src, 4, False), (dst, 4, True)])
            queue.publish()
            reap_used(queue, len(pairs))
            assert queue.driver.get_used() == []  # all taken, none left over
        for i, (_, dst) in enumerate(pairs):
            assert ram.memory.read(dst, 4) == i.to_bytes(4, "little")
        with pytest.raises(TimeoutError, match="did not answer in 0.2 s"):
            reap_used(queue, 1, timeout=0.2)  # nothing posted: nothing comes
        report = idle_report(proc.pid, seconds=0.1)
        assert report.startswith("daemon CPU while idle for 0.1 s: ")
        assert report.endswith(" MiB")
    assert proc.returncode == 0  # SIGTERMed, exited cleanly
