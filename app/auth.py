"""API keys: how they are made, stored (hashed) and checked on every `/api` and `/v1` request."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from app.db.models import LOCAL_USER_ID
from app.errors import TooManyRequests, Unauthorized
from app.rate_limit import RateLimiter, retry_after_header
from app.store import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "cs_"


@dataclass(frozen=True, slots=True)
class AuthUser:
    id: str
    name: str


LOCAL_USER = AuthUser(LOCAL_USER_ID, "local")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 cannot be brute-forced; a slow password
    # hash would only slow down every request.
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """The start of a key, stored in clear so that a user can tell their keys apart."""
    return key[:10]


class Authenticator:
    """Resolves a request's `Authorization` header to a user; with auth off, everyone is `local`.

    Wrong keys are limited per client address by `failures` (one token per wrong key): once an
    address has used its budget, its keys are refused with a 429 without asking the database, until
    the budget refills. Keys known good (in the cache) are never refused, and never count.
    """

    MAX_BLOCKED = 10_000

    def __init__(
        self, store: Store, *, enabled: bool, cache_s: float = 10.0, failures: RateLimiter | None = None
    ) -> None:
        self.store = store
        self.enabled = enabled
        # How long a checked key is trusted without asking the database: a revoked key stops within this.
        self.cache_s = cache_s
        self.failures = failures
        self._cache: dict[str, tuple[AuthUser, float]] = {}
        # Address -> when (monotonic) it may have its keys checked again. Kept here even with a shared
        # (Redis) budget: refusing a blocked address must cost neither the database nor Redis.
        self._blocked: dict[str, float] = {}

    async def authenticate(self, key: str | None, client: str = "unknown") -> AuthUser:
        """The user whose key this is (the key from `Authorization: Bearer <key>`), sent from `client`."""
        if not self.enabled:
            return LOCAL_USER
        if not key or not key.strip():
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        digest = hash_key(key.strip())
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        self._refuse_if_blocked(client, now)
        row = await self.store.user_by_key_hash(digest)
        if row is None:
            self._cache.pop(digest, None)
            log.debug("unknown or revoked API key from %s", client)  # never the key, nor its hash
            await self._count_failure(client)
            raise Unauthorized("this API key is not valid (unknown or revoked)")
        user = AuthUser(row.id, row.name)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (user, now + self.cache_s)
        return user

    async def aclose(self) -> None:
        if self.failures is not None:
            await self.failures.aclose()

    def _refuse_if_blocked(self, client: str, now: float) -> None:
        until = self._blocked.get(client)
        if until is None:
            return
        if until <= now:
            del self._blocked[client]
            return
        raise _too_many_failures(until - now)

    async def _count_failure(self, client: str) -> None:
        if self.failures is None:
            return
        wait = await self.failures.acquire(client)
        if wait is None:
            return
        if len(self._blocked) >= self.MAX_BLOCKED:
            now = time.monotonic()
            self._blocked = {c: t for c, t in self._blocked.items() if t > now}
            if len(self._blocked) >= self.MAX_BLOCKED:
                self._blocked.clear()
        self._blocked[client] = time.monotonic() + wait
        raise _too_many_failures(wait)


def _too_many_failures(wait: float) -> TooManyRequests:
    retry_after = retry_after_header(wait)
    return TooManyRequests(
        f"too many requests with a wrong API key from this address; try again in {retry_after} s",
        headers={"Retry-After": retry_after},
    )
