"""Local servers that speak the search providers' protocols, so no test reaches the internet.

`searxng_app` is the one SearxNG stand-in: `GET /search?q=...&format=json` answered like SearxNG's JSON
API, with what a test's `answer` gives for the query (results, or a whole response such as an error).
`searxng_server` serves it with example results for the end-to-end tests; the tool, browser and
embedded-model tests serve it with answers of their own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.processes import free_port

SearchResult = dict[str, str]
"""One SearxNG result: title, url, content (and whatever else an answer adds)."""
Answer = Callable[[str], Awaitable[list[SearchResult] | web.Response]]
"""What the server answers to a query: its results, or a whole response (an error status, a bad body)."""


def searxng_app(answer: Answer) -> web.Application:
    """SearxNG's JSON API, answering each query with `answer`."""

    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        if request.query.get("format") != "json":
            return web.Response(status=403, text="Forbidden")  # SearxNG without the json format enabled
        answered = await answer(query)
        if isinstance(answered, web.Response):
            return answered
        return web.json_response({"query": query, "number_of_results": len(answered), "results": answered})

    app = web.Application()
    app.router.add_get("/search", search)
    return app


def example_results(query: str) -> list[SearchResult]:
    return [
        {
            "title": f"Result about {query}",
            "url": f"https://example.org/{query.replace(' ', '-')}",
            "content": f"Everything about {query}.",
        },
        {"title": "Second result", "url": "https://example.com/second", "content": "More details."},
    ]


@dataclass
class SearchServerState:
    requests: list[str] = field(default_factory=list)
    delay_s: float = 0.0


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
    """A SearxNG-compatible JSON search endpoint on a thread, answering with `example_results` after
    `state.delay_s`; yields (base URL, state), whose `requests` are the queries received."""
    state = SearchServerState()

    async def answer(query: str) -> list[SearchResult]:
        state.requests.append(query)
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        return example_results(query)

    with serve_on_thread(searxng_app(answer)) as url:
        yield url, state
