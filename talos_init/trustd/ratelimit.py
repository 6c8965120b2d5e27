"""A token bucket per requester address: a few requests at once, then one per interval.

Pure: the clock is passed in. The table is bounded; when full, the buckets
that have refilled completely are dropped (they would allow a burst anyway).
"""

from __future__ import annotations

from collections.abc import Callable


class RateLimit:
    def __init__(self, burst: int, per_second: float, clock: Callable[[], float],
                 max_keys: int = 4096):
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _tokens(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) * self.per_second)

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when it has none left."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._buckets = {k: v for k, v in self._buckets.items()
                             if self._tokens(k, now) < self.burst}
            if len(self._buckets) >= self.max_keys:
                return False  # that many addresses all busy at once: nobody new for now
        self._buckets[key] = (tokens - 1.0, now)
        return True
