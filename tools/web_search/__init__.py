"""The web search tool and its providers."""

from tools.web_search.cache import TTLCache
from tools.web_search.duckduckgo import DEFAULT_DUCKDUCKGO_URL, DuckDuckGoProvider
from tools.web_search.factory import PROVIDER_NAMES, build_search_provider
from tools.web_search.provider import (
    SearchError,
    SearchProvider,
    SearchRateLimited,
    SearchResult,
    SearchUnavailable,
)
from tools.web_search.searxng import SearxngProvider
from tools.web_search.tool import WebSearch

__all__ = [
    "DEFAULT_DUCKDUCKGO_URL",
    "PROVIDER_NAMES",
    "DuckDuckGoProvider",
    "SearchError",
    "SearchProvider",
    "SearchRateLimited",
    "SearchResult",
    "SearchUnavailable",
    "SearxngProvider",
    "TTLCache",
    "WebSearch",
    "build_search_provider",
]
