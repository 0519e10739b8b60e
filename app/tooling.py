"""The agent's tools, built from settings."""

from __future__ import annotations

from app.settings import Settings
from tools.base import Tool
from tools.calculator import Calculator
from tools.web_search import WebSearch, build_search_provider


def build_tools(settings: Settings) -> dict[str, Tool]:
    provider = build_search_provider(
        settings.search_provider,
        searxng_url=settings.searxng_url,
        duckduckgo_url=settings.duckduckgo_url,
        timeout_s=settings.search_timeout_s,
    )
    # The whole search, retries included, must end before the agent's own tool timeout.
    search = WebSearch(
        provider, timeout_s=min(settings.search_timeout_s * 2.5, settings.tool_timeout_s * 0.9)
    )
    tools: list[Tool] = [Calculator(), search]
    return {t.name: t for t in tools}
