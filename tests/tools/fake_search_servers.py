"""In-process HTTP servers that speak like DuckDuckGo's HTML endpoint and SearxNG's JSON API (the
latter is `tests/support/search_servers.searxng_app`, with scripted failures).

They bind 127.0.0.1 on a free port; nothing in the tool tests reaches the internet.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.processes import free_port
from tests.support.search_servers import SearchResult, searxng_app


@dataclass
class FakeHit:
    title: str
    url: str
    snippet: str


@dataclass
class FakeSearchServer:
    """Shared behaviour: a scripted list of statuses to answer before normal pages, and counters."""

    hits: list[FakeHit] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Answered first, one per request, before normal 200 answers start."""
    always_status: int | None = None
    stall: bool = False
    """Hold every request until the server stops (to exercise timeouts)."""
    queries: list[str] = field(default_factory=list)
    base_url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def requests(self) -> int:
        return len(self.queries)

    async def _scripted(self) -> web.Response | None:
        if self.stall:
            await self._release.wait()
        if self.always_status is not None:
            return web.Response(status=self.always_status, text="<html>slow down</html>")
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="<html>slow down</html>")
        return None


def duckduckgo_page(hits: list[FakeHit]) -> str:
    """A page shaped like html.duckduckgo.com/html/ results (the parts the ddgs engine reads)."""
    results = []
    for hit in hits:
        url = html.escape(hit.url, quote=True)
        results.append(
            f"""
<div class="result results_links results_links_deep web-result ">
  <div class="links_main links_deep result__body">
    <h2 class="result__title">
      <a rel="nofollow" class="result__a" href="{url}">{html.escape(hit.title)}</a>
    </h2>
    <div class="result__extras">
      <div class="result__extras__url">
        <a class="result__url" href="{url}">{html.escape(hit.url)}</a>
      </div>
    </div>
    <a class="result__snippet" href="{url}">{html.escape(hit.snippet)}</a>
    <div class="clear"></div>
  </div>
</div>"""
        )
    return f"""<!DOCTYPE html>
<html><head><title>results at DuckDuckGo</title></head>
<body><div id="links" class="results">{"".join(results)}</div></body></html>"""


@asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@asynccontextmanager
async def fake_duckduckgo(state: FakeSearchServer) -> AsyncIterator[FakeSearchServer]:
    """Serves POST /html/ with form field q, like html.duckduckgo.com."""

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        state.queries.append(str(form.get("q", "")))
        scripted = await state._scripted()
        if scripted is not None:
            return scripted
        return web.Response(text=duckduckgo_page(state.hits), content_type="text/html")

    app = web.Application()
    app.router.add_post("/html/", handle)
    async with _serve(app) as base:
        state.base_url = f"{base}/html/"
        try:
            yield state
        finally:
            state._release.set()


@asynccontextmanager
async def fake_searxng(
    state: FakeSearchServer, *, raw_body: str | None = None
) -> AsyncIterator[FakeSearchServer]:
    """Serves GET /search?q=...&format=json like a SearxNG instance with the json format enabled."""

    async def answer(query: str) -> list[SearchResult] | web.Response:
        state.queries.append(query)
        scripted = await state._scripted()
        if scripted is not None:
            return scripted
        if raw_body is not None:
            return web.Response(text=raw_body, content_type="application/json")
        return [{"title": h.title, "url": h.url, "content": h.snippet, "engine": "fake"} for h in state.hits]

    async with _serve(searxng_app(answer)) as base:
        state.base_url = base
        try:
            yield state
        finally:
            state._release.set()


def unused_port() -> int:
    """A port with nothing listening on it (bound, then released)."""
    return free_port()
