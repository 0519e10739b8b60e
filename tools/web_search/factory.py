"""Picks a search provider by name, from configuration values."""

from __future__ import annotations

from tools.web_search.duckduckgo import DuckDuckGoProvider
from tools.web_search.provider import SearchProvider
from tools.web_search.searxng import SearxngProvider

__all__ = ["PROVIDER_NAMES", "build_search_provider"]

PROVIDER_NAMES = ("duckduckgo", "searxng")


def build_search_provider(
    provider: str,
    *,
    searxng_url: str | None = None,
    duckduckgo_url: str | None = None,
    timeout_s: float = 10.0,
) -> SearchProvider:
    """The provider called `provider` ("duckduckgo" or "searxng", case-insensitive).

    `timeout_s` bounds one request to the provider. Raises ValueError for an unknown name. A missing
    `searxng_url` is not an error here: the searxng provider then reports it on each search.
    """
    match provider.strip().lower():
        case "duckduckgo":
            return DuckDuckGoProvider(duckduckgo_url, timeout_s=timeout_s)
        case "searxng":
            return SearxngProvider(searxng_url, timeout_s=timeout_s)
    raise ValueError(f"unknown search provider {provider!r}; expected one of {', '.join(PROVIDER_NAMES)}")
