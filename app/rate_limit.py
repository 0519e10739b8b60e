"""Per-user request rate limits: a token bucket per user, in this process or shared through Redis."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def acquire(self, user_id: str) -> float | None:
        """Take one token; returns None if allowed, else the seconds until a token is available."""
        ...

    async def aclose(self) -> None: ...


class LocalRateLimiter:
    """`per_minute` requests a minute on average, in bursts of up to `per_minute`.

    Buckets live in this process: with N replicas behind a round-robin balancer a user gets up to N
    times the limit. Set `CHATSTACK_REDIS_URL` to share them (`RedisRateLimiter`).
    """

    def __init__(self, per_minute: int, max_users: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def acquire(self, user_id: str) -> float | None:
        return self.take(user_id)

    def take(self, user_id: str, now: float | None = None) -> float | None:
        if self.capacity <= 0:
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

    async def aclose(self) -> None:
        return None


# One round trip, atomic, on Redis's clock (replicas' clocks may disagree). Numbers go back as a string:
# Redis turns Lua numbers into integers.
_TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1]) or capacity
local last = tonumber(bucket[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""

REDIS_TIMEOUT_S = 0.5
ERROR_LOG_INTERVAL_S = 60.0


class RedisRateLimiter:
    """The same bucket, kept in Redis so that every replica draws from it.

    Fails open: when Redis cannot answer within `REDIS_TIMEOUT_S`, requests are let through (a rate
    limit must not take the service down with it) and a warning is logged at most once a minute.
    """

    def __init__(self, url: str, per_minute: int, key_prefix: str = "chatstack") -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self._prefix = f"{key_prefix}:ratelimit:"
        # An empty bucket refills in a minute, and a full bucket is the same as no bucket.
        self._ttl_ms = 60_000
        self._redis: Redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._take = self._redis.register_script(_TAKE_SCRIPT)
        self._last_error_log = -math.inf

    async def acquire(self, user_id: str) -> float | None:
        if self.capacity <= 0:
            return None
        try:
            wait = float(
                await self._take(keys=[self._prefix + user_id], args=[self.capacity, self.rate, self._ttl_ms])
            )
        except (RedisError, OSError, ValueError) as exc:
            now = time.monotonic()
            if now - self._last_error_log > ERROR_LOG_INTERVAL_S:
                self._last_error_log = now
                log.warning("rate limit not applied: Redis did not answer (%s: %s)", type(exc).__name__, exc)
            return None
        return wait if wait > 0 else None

    async def aclose(self) -> None:
        await self._redis.aclose()


def rate_limiter(per_minute: int, redis_url: str | None, key_prefix: str) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url, per_minute, key_prefix)
    return LocalRateLimiter(per_minute)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
