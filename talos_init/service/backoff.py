"""Restart backoff: exponential with jitter, pure (the caller passes the random source)."""

from __future__ import annotations

import random

from talos_init.record import record


@record(frozen=True)
class Backoff:
    initial: float = 0.1  # first restart after about 100 ms
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # +-20%, so services crashing together spread out
    stable_after: float = 10.0  # a run this long resets the crash count

    def delay(self, crashes_in_row: int, rng: random.Random) -> float:
        """Delay before restart number ``crashes_in_row`` (1 for the first crash)."""
        n = max(1, crashes_in_row)
        base = min(self.maximum, self.initial * self.factor ** (n - 1))
        spread = base * self.jitter
        return min(self.maximum, max(0.0, base + rng.uniform(-spread, spread)))

    def crashes_after(self, crashes_in_row: int, run_seconds: float) -> int:
        """The crash count including this crash, reset if the run was stable."""
        return 1 if run_seconds >= self.stable_after else crashes_in_row + 1
