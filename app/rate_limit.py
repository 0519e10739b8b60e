"""Per-user request rate limits: a token bucket per user, in this process."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class RateLimiter:
    """`per_minute` requests a minute on average, in bursts of up to `per_minute`.

    Buckets live in this process: with N replicas behind a round-robin balancer a user gets up to N
    times the limit, which the balancer's own per-client limit (nginx `limit_req`) bounds in turn.
    """

    def __init__(self, per_minute: int, max_users: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def acquire(self, user_id: str, now: float | None = None) -> float | None:
        """Take one token; returns None if allowed, else the seconds until a token is available."""
        if not self.enabled:
            return None
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(user_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[user_id] = (tokens - 1, now)
            allowed: float | None = None
        else:
            self._buckets[user_id] = (tokens, now)
            allowed = (1 - tokens) / self.rate
        while len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
        return allowed


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
