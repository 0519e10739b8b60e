"""What a search backend must provide, and the failures it may report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["SearchError", "SearchProvider", "SearchRateLimited", "SearchResult", "SearchUnavailable"]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One hit, as the provider returned it (not yet sanitized)."""

    title: str
    url: str
    snippet: str = ""


class SearchError(Exception):
    """The search failed; the message says why, in words fit for the model."""


class SearchRateLimited(SearchError):
    """The provider refused the request for now (rate limiting); worth retrying after a pause."""


class SearchUnavailable(SearchError):
    """The provider could not be reached: offline, refused connection, timeout, server error."""


class SearchProvider(Protocol):
    """A web search backend."""

    @property
    def name(self) -> str:
        """Human-readable name used in messages, e.g. "DuckDuckGo"."""
        ...

    async def search(self, query: str, max_results: int) -> list[SearchResult]:
        """Return up to `max_results` results; raise SearchError (or a subclass) on failure."""
        ...
