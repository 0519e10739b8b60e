"""httpx as an engine (`--engine httpx`): a second well-kept library client to hold the socket engine
against, in framing tests and in `python -m bench.compare_vllm --engines socket,aiohttp,httpx`."""

from __future__ import annotations

import httpx

from bench.clients.clock import now
from bench.clients.exchange import Exchange, Origin, Request
from bench.clients.task_engine import TaskEngine


class HttpxEngine(TaskEngine):
    """Sends requests to one origin with an httpx AsyncClient (unbounded pool)."""

    name = "httpx"
    transport_errors = (httpx.HTTPError, OSError)

    def __init__(self, origin: Origin) -> None:
        super().__init__(origin)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        self._client = httpx.AsyncClient(limits=limits, timeout=None)

    async def _exchange(self, request: Request, url: str, exchange: Exchange) -> None:
        async with self._client.stream(
            request.method, url, content=request.body or None, headers=dict(request.headers)
        ) as response:
            exchange.status = response.status_code
            exchange.headers = {k.lower(): v for k, v in response.headers.items()}
            async for piece in response.aiter_raw():
                exchange.chunks.append((now(), piece))

    async def _close_client(self) -> None:
        await self._client.aclose()
