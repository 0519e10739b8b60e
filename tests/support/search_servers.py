"""Local servers that speak the search providers' protocols, so no test reaches the internet."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.processes import free_port


@dataclass
class SearchServerState:
    requests: list[str] = field(default_factory=list)
    delay_s: float = 0.0


def _searxng_app(state: SearchServerState) -> web.Application:
    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        state.requests.append(query)
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        results = [
            {
                "title": f"Result about {query}",
                "url": f"https://example.org/{query.replace(' ', '-')}",
                "content": f"Everything about {query}.",
            },
            {"title": "Second result", "url": "https://example.com/second", "content": "More details."},
        ]
        return web.json_response({"query": query, "results": results})

    app = web.Application()
    app.router.add_get("/search", search)
    return app


@contextmanager
def serve_on_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app on 127.0.0.1 from a thread of its own; yields its base URL."""
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
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
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def searxng_server() -> Iterator[tuple[str, SearchServerState]]:
    """A SearxNG-compatible JSON search endpoint on a thread; yields (base URL, state)."""
    state = SearchServerState()
    with serve_on_thread(_searxng_app(state)) as url:
        yield url, state
