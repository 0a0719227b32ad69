"""Per-key request rate: a token bucket per API key.

Each key may make ``burst`` requests at once, refilled at ``rate`` per second. The buckets
live in this process: with N gateway replicas a key gets up to N times the rate. That is
acceptable for now; a limit shared across replicas belongs in NATS KV (ARCHITECTURE §9).

Litestar's ``RateLimitMiddleware`` was considered: it counts in whole-second windows (no
burst, no fractional rates), sends no ``Retry-After`` and serialises every request behind
one lock, so this small bucket is used instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Buckets by key; ``take`` spends a token or says how long until one is back."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        # key -> (tokens, when they were counted). One per API key ever used: bounded by the
        # keys in the store.
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> int:
        """0 if the request may go ahead, else whole seconds until it may (Retry-After)."""
        now = self.clock()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))
