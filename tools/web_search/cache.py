"""A small in-memory cache with least-recently-used eviction and per-entry expiry."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Keeps at most `maxsize` entries, each for `ttl_s` seconds of `clock` time.

    `clock` is injectable so tests can move time forward; it must be monotonic. A `maxsize` or
    `ttl_s` of zero disables caching. Not thread-safe: it is meant for one event loop.
    """

    def __init__(self, maxsize: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 0 or ttl_s < 0:
            raise ValueError("maxsize and ttl_s must not be negative")
        self._maxsize = maxsize
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value`, evicting the least recently used entries beyond `maxsize`."""
        if self._maxsize == 0 or self._ttl_s == 0:
            return
        self._entries[key] = (self._clock() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
