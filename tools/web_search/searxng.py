"""Web search through a SearxNG instance's JSON API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tools.web_search.provider import SearchError, SearchRateLimited, SearchResult, SearchUnavailable

__all__ = ["SearxngProvider"]

MAX_RESPONSE_BYTES = 2 * 1024 * 1024
"""A JSON page of results is tens of kilobytes; anything far larger is not worth reading."""


def _search_endpoint(base_url: str) -> str:
    """`{base_url}/search`, tolerating a base URL that already ends in /search."""
    base = base_url.rstrip("/")
    return base if base.endswith("/search") else f"{base}/search"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _parse_results(data: object, max_results: int) -> list[SearchResult]:
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise SearchError("SearxNG answered without a 'results' list")
    results: list[SearchResult] = []
    for item in data["results"]:
        url = _text(item.get("url")) if isinstance(item, dict) else ""
        if not url:
            continue
        title, snippet = _text(item.get("title")), _text(item.get("content"))
        results.append(SearchResult(title=title, url=url, snippet=snippet))
        if len(results) >= max_results:
            break
    return results


class SearxngProvider:
    """Searches a SearxNG instance: GET {base_url}/search?q=...&format=json.

    The instance must have the json format enabled (`search.formats` in its settings.yml); SearxNG
    answers 403 otherwise. A missing base URL is reported when searching (as a SearchError), so that
    a misconfiguration reaches the user as a tool error rather than as a startup crash.
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        timeout_s: float = 10.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._base_url = (base_url or "").strip()
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes

    @property
    def name(self) -> str:
        return "SearxNG"

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Search SearxNG; raises SearchRateLimited, SearchUnavailable or SearchError."""
        if not self._base_url:
            raise SearchError("no SearxNG URL is configured")
        if urlsplit(self._base_url).scheme not in ("http", "https"):
            raise SearchError(f"the configured SearxNG URL is not an http(s) URL: {self._base_url!r}")
        body = await self._fetch(_search_endpoint(self._base_url), {"q": query, "format": "json"})
        try:
            data: Any = json.loads(body)
        except ValueError:
            raise SearchError("SearxNG answered with invalid JSON") from None
        return _parse_results(data, max_results)

    async def _fetch(self, url: str, params: dict[str, str]) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        headers = {"Accept": "application/json"}
        try:
            # One session per search: searches are rare next to model calls, and this leaves no
            # session to close at shutdown.
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, params=params, headers=headers) as response,
            ):
                self._check_status(response.status)
                body = await response.content.read(self._max_response_bytes + 1)
        except TimeoutError:
            raise SearchUnavailable(f"no answer within {self._timeout_s:g} s") from None
        except aiohttp.ClientConnectionError as exc:
            raise SearchUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise SearchError(f"request failed ({type(exc).__name__}: {exc})") from exc
        if len(body) > self._max_response_bytes:
            raise SearchError("SearxNG's answer is too large")
        return body

    @staticmethod
    def _check_status(status: int) -> None:
        if status == 200:
            return
        if status == 429:
            raise SearchRateLimited("SearxNG answered HTTP 429 (rate limited)")
        if status == 403:
            raise SearchError(
                "SearxNG answered HTTP 403; the instance may not have the json format enabled "
                "(search.formats in settings.yml)"
            )
        if status >= 500:
            raise SearchUnavailable(f"SearxNG answered HTTP {status}")
        raise SearchError(f"SearxNG answered with unexpected HTTP status {status}")
