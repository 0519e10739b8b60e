"""Web search through DuckDuckGo's HTML endpoint, using the `ddgs` engine for request and parsing."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ddgs.engines.duckduckgo import Duckduckgo
from ddgs.exceptions import DDGSException, TimeoutException

from tools.web_search.provider import SearchError, SearchRateLimited, SearchResult, SearchUnavailable

__all__ = ["DEFAULT_DUCKDUCKGO_URL", "DuckDuckGoProvider"]

DEFAULT_DUCKDUCKGO_URL = "https://html.duckduckgo.com/html/"

# DuckDuckGo answers 202 (with a challenge page) when it rate limits; 403 and 429 mean the same.
_RATE_LIMIT_STATUSES = frozenset({202, 403, 429})
_MAX_DETAIL_CHARS = 300


def _describe(exc: BaseException) -> str:
    """The most specific message available: ddgs wraps primp errors in a verbose repr."""
    cause = exc.__cause__ or exc
    detail = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return detail[:_MAX_DETAIL_CHARS]


class _Engine(Duckduckgo):
    """The ddgs engine, pointed at a configurable URL and reporting failures as SearchError."""

    def __init__(self, search_url: str, timeout_s: float) -> None:
        # ddgs takes whole seconds; the real (fractional) limit is set on the primp client below.
        super().__init__(timeout=max(1, math.ceil(timeout_s)))
        self.http_client.client.timeout = timeout_s
        self.search_url = search_url

    def request(self, *args: Any, **kwargs: Any) -> str:
        try:
            response = self.http_client.request(*args, **kwargs)
        except TimeoutException as exc:
            raise SearchUnavailable(f"timed out ({_describe(exc)})") from exc
        except DDGSException as exc:
            raise SearchUnavailable(_describe(exc)) from exc
        status = int(response.status_code)
        if status == 200:
            return str(response.text)
        if status in _RATE_LIMIT_STATUSES:
            raise SearchRateLimited(f"DuckDuckGo answered HTTP {status} (rate limited)")
        if status >= 500:
            raise SearchUnavailable(f"DuckDuckGo answered HTTP {status}")
        raise SearchError(f"DuckDuckGo answered with unexpected HTTP status {status}")


class DuckDuckGoProvider:
    """Searches DuckDuckGo's no-JavaScript HTML page (no API key needed).

    The `ddgs` client is blocking (and parses the page with lxml), so each search runs in a worker
    thread, bounded both by the HTTP client's own timeout and by an overall `asyncio.wait_for`. The
    threads are this provider's own (at most MAX_THREADS): a search abandoned on timeout keeps its
    thread until the client's timeout, and in the loop's default executor it would take a thread
    that DNS lookups (`getaddrinfo`) of every other connection wait for. A fresh engine is made per
    search (about a millisecond) so that concurrent searches share no client state across threads.
    """

    MAX_THREADS = 4

    def __init__(
        self,
        search_url: str | None = None,
        *,
        timeout_s: float = 10.0,
        region: str = "us-en",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._search_url = search_url or DEFAULT_DUCKDUCKGO_URL
        self._timeout_s = timeout_s
        self._region = region
        # Threads start on first use and are reused; idle ones cost nothing but their stacks.
        self._threads = ThreadPoolExecutor(self.MAX_THREADS, thread_name_prefix="duckduckgo")

    @property
    def name(self) -> str:
        return "DuckDuckGo"

    @property
    def search_url(self) -> str:
        """The HTML endpoint queried (a local server in tests)."""
        return self._search_url

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Search DuckDuckGo; raises SearchRateLimited, SearchUnavailable or SearchError."""
        try:
            # A little slack over the client timeout, so the client's own (more precise) error wins.
            search = asyncio.get_running_loop().run_in_executor(
                self._threads, self._search_blocking, query, max_results
            )
            return await asyncio.wait_for(search, timeout=self._timeout_s + 1.0)
        except TimeoutError:
            raise SearchUnavailable(f"no answer within {self._timeout_s:g} s") from None

    def _search_blocking(self, query: str, max_results: int) -> list[SearchResult]:
        engine = _Engine(self._search_url, self._timeout_s)
        try:
            hits = engine.search(query, region=self._region) or []
        except SearchError:
            raise
        except Exception as exc:  # a parsing failure in ddgs/lxml on an unexpected page
            raise SearchError(f"could not read DuckDuckGo's answer ({_describe(exc)})") from exc
        return [SearchResult(title=hit.title, url=hit.href, snippet=hit.body) for hit in hits[:max_results]]
