"""A SearxNG-compatible JSON search server on a thread that answers from `tasks.CANNED_RESULTS`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.local.tasks import CANNED_RESULTS
from tests.support.search_servers import Answer, SearchResult, searxng_app, serve_on_thread


def _answer(queries: list[str]) -> Answer:
    async def answer(query: str) -> list[SearchResult]:
        queries.append(query)
        hits = [r for r in CANNED_RESULTS if r.keyword in query.lower()]
        return [{"title": r.title, "url": r.url, "content": r.content} for r in hits]

    return answer


@contextmanager
def canned_search_server() -> Iterator[tuple[str, list[str]]]:
    """Yields (base URL, the queries received so far)."""
    queries: list[str] = []
    with serve_on_thread(searxng_app(_answer(queries))) as url:
        yield url, queries
