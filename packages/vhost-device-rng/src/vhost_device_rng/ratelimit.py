"""A token bucket refilled once per period, shared by every socket of the daemon."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: --max-bytes' default, upstream's u64::MAX: no rate limit.
UNLIMITED = (1 << 64) - 1


class TokenBucket:
    """At most `capacity` bytes per `period` seconds, across all callers.

    `take` never blocks: it grants what is left (possibly 0) and `wait_time` says when
    more will be; the caller defers its work instead of sleeping on a worker thread.
    """

    def __init__(
        self, capacity: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = capacity
        self._window_end: float | None = None  # the first period starts with first use

    def _refill(self, now: float) -> None:
        if self._window_end is None:
            self._window_end = now + self.period
        elif now >= self._window_end:
            self._tokens = self.capacity
            # Windows stay aligned to the first one, so bursts cannot shift them.
            elapsed_periods = int((now - self._window_end) // self.period) + 1
            self._window_end += elapsed_periods * self.period

    @property
    def unlimited(self) -> bool:
        """No limit at all (--max-bytes left at its default): nothing to count."""
        return self.capacity >= UNLIMITED

    def take(self, wanted: int) -> int:
        """Grant up to `wanted` tokens."""
        with self._lock:
            self._refill(self._clock())
            granted = min(wanted, self._tokens)
            self._tokens -= granted
            return granted

    def wait_time(self) -> float:
        """Seconds until tokens are available again (0 if there are some now)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            assert self._window_end is not None
            return 0.0 if self._tokens else self._window_end - now
