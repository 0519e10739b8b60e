"""A SearxNG-compatible JSON search server on a thread that answers from `tasks.CANNED_RESULTS`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from tests.local.tasks import CANNED_RESULTS
from tests.support.search_servers import serve_on_thread


def _app(queries: list[str]) -> web.Application:
    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        queries.append(query)
        hits = [r for r in CANNED_RESULTS if r.keyword in query.lower()]
        results = [{"title": r.title, "url": r.url, "content": r.content} for r in hits]
        return web.json_response({"query": query, "results": results})

    app = web.Application()
    app.router.add_get("/search", search)
    return app


@contextmanager
def canned_search_server() -> Iterator[tuple[str, list[str]]]:
    """Yields (base URL, the queries received so far)."""
    queries: list[str] = []
    with serve_on_thread(_app(queries)) as url:
        yield url, queries
