from __future__ import annotations

from vhost_device_rng.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_grants_up_to_capacity_per_period() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, 1.0, clock)
    assert bucket.take(600) == 600
    assert bucket.take(600) == 400
    assert bucket.take(1) == 0
    assert bucket.wait_time() == 1.0
    clock.now += 0.25
    assert bucket.wait_time() == 0.75
    clock.now += 0.75
    assert bucket.wait_time() == 0.0
    assert bucket.take(5000) == 1000


def test_windows_stay_aligned_after_idle_periods() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 1.0, clock)
    clock.now += 7  # the first period starts with the first take, not at creation
    assert bucket.take(10) == 10
    clock.now += 3.5
    assert bucket.take(10) == 10
    assert bucket.wait_time() == 0.5
