"""The shared rate limit against the machine's real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.rate_limit import RedisRateLimiter
from tests.support.processes import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(f"{name}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_replicas_draw_from_one_bucket(prefix: str) -> None:
    first, second = RedisRateLimiter(REDIS_URL, 6, prefix), RedisRateLimiter(REDIS_URL, 6, prefix)
    try:
        results = [await limiter.acquire("alice") for limiter in (first, second) * 3]
        assert results == [None] * 6
        wait = await second.acquire("alice")
        assert wait is not None
        assert 9 < wait <= 10  # one token every 10 s at 6 a minute
        assert await first.acquire("bob") is None  # buckets are per user
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_bucket_expires_once_it_would_be_full(prefix: str) -> None:
    limiter = RedisRateLimiter(REDIS_URL, 60, prefix)
    try:
        await limiter.acquire("alice")
        redis = Redis.from_url(REDIS_URL)
        ttl_ms = await redis.pttl(f"{prefix}:ratelimit:alice")
        await redis.aclose()
        assert 55_000 < ttl_ms <= 60_000
    finally:
        await limiter.aclose()


async def test_without_redis_requests_pass_and_quickly() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", 1, "unreachable")
    try:
        started = time.perf_counter()
        assert [await limiter.acquire("alice") for _ in range(3)] == [None, None, None]
        assert time.perf_counter() - started < 3
    finally:
        await limiter.aclose()


async def test_zero_means_no_limit(prefix: str) -> None:
    limiter = RedisRateLimiter(REDIS_URL, 0, prefix)
    try:
        assert all([await limiter.acquire("alice") is None for _ in range(5)])
    finally:
        await limiter.aclose()
