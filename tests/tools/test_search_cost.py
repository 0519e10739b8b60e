"""Formatting search results costs the same for a megabyte-long snippet as for a short one: the untrusted
text is cut before the per-character cleaning, which runs on the event loop."""

from __future__ import annotations

import pytest

from tools.web_search import formatting
from tools.web_search.formatting import MAX_SNIPPET_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS, format_results
from tools.web_search.provider import SearchResult


def test_cleaning_never_looks_at_more_than_a_few_times_what_it_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    strip = formatting._strip_control

    def spy(text: str) -> str:
        seen.append(len(text))
        return strip(text)

    monkeypatch.setattr(formatting, "_strip_control", spy)
    huge = [
        SearchResult(title="t " * 500_000, url="https://example.org/a", snippet="word " * 400_000),
        SearchResult(title="long url", url="https://example.org/" + "a" * 1_000_000, snippet="x"),
    ]
    content, sources = format_results("query", huge)
    assert max(seen) <= 4 * max(MAX_SNIPPET_CHARS, MAX_TITLE_CHARS, MAX_URL_CHARS) + 64
    assert [s.url for s in sources] == ["https://example.org/a"]  # the million-character URL is refused
    assert len(sources[0].snippet) <= MAX_SNIPPET_CHARS
    assert sources[0].snippet.startswith("word word")
    assert len(content) <= formatting.MAX_CONTENT_CHARS
