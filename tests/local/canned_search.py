"""A SearxNG-compatible JSON search server on a thread that answers from `tasks.CANNED_RESULTS`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from tests.local.tasks import CANNED_RESULTS
from tests.support.processes import free_port


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
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(queries))
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}", queries
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
