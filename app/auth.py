"""API keys: how they are made, stored (hashed) and checked on every `/api` and `/v1` request."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from app.db.models import LOCAL_USER_ID
from app.errors import Unauthorized
from app.store import Store

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
    """Resolves a request's `Authorization` header to a user; with auth off, everyone is `local`."""

    def __init__(self, store: Store, *, enabled: bool, cache_s: float = 10.0) -> None:
        self.store = store
        self.enabled = enabled
        # How long a checked key is trusted without asking the database: a revoked key stops within this.
        self.cache_s = cache_s
        self._cache: dict[str, tuple[AuthUser, float]] = {}

    async def authenticate(self, key: str | None) -> AuthUser:
        """The user whose key this is (the key from `Authorization: Bearer <key>`)."""
        if not self.enabled:
            return LOCAL_USER
        if not key or not key.strip():
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        digest = hash_key(key.strip())
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        row = await self.store.user_by_key_hash(digest)
        if row is None:
            self._cache.pop(digest, None)
            raise Unauthorized("this API key is not valid (unknown or revoked)")
        user = AuthUser(row.id, row.name)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (user, now + self.cache_s)
        return user
