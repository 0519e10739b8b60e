"""httpx as an engine: kept only so the client comparison (`bench.client_shootout`) can measure it."""

from __future__ import annotations

import asyncio

import httpx

from bench.clients.clock import now
from bench.clients.exchange import Done, Exchange, Origin, Request


class HttpxEngine:
    """Sends requests to one origin with an httpx AsyncClient (unbounded pool)."""

    name = "httpx"

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(limits=limits, timeout=None)
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, base_url: str) -> HttpxEngine:
        return cls(Origin.parse(base_url))

    def start(self, request: Request, on_done: Done, timeout_s: float) -> Exchange:
        exchange = Exchange(clock="user")
        task = asyncio.get_running_loop().create_task(self._run(request, exchange, on_done, timeout_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return exchange

    async def fetch(self, request: Request, timeout_s: float) -> Exchange:
        exchange = Exchange(clock="user")
        await self._run(request, exchange, lambda _: None, timeout_s)
        return exchange

    async def _run(self, request: Request, exchange: Exchange, on_done: Done, timeout_s: float) -> None:
        origin = self.origin
        url = f"{origin.scheme}://{origin.host_header}{origin.prefix}{request.path}"
        try:
            async with asyncio.timeout(timeout_s):
                exchange.sent_at = now()
                async with self._client.stream(
                    request.method, url, content=request.body or None, headers=dict(request.headers)
                ) as response:
                    exchange.status = response.status_code
                    exchange.headers = {k.lower(): v for k, v in response.headers.items()}
                    async for piece in response.aiter_raw():
                        exchange.chunks.append((now(), piece))
        except TimeoutError:
            exchange.error = f"no complete response within {timeout_s:g} s"
        except (httpx.HTTPError, OSError) as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
        exchange.ended_at = exchange.chunks[-1][0] if exchange.chunks and not exchange.error else now()
        on_done(exchange)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
