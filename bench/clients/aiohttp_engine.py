"""The portable engine: aiohttp (TLS, proxies, anything the socket engine does not speak).

Receive times are taken when aiohttp hands the bytes over, so they include the event loop's delay;
the exchange says so (`clock="user"`).
"""

from __future__ import annotations

import aiohttp

from bench.clients.clock import now
from bench.clients.exchange import Exchange, Origin, Request
from bench.clients.task_engine import TaskEngine


class AiohttpEngine(TaskEngine):
    """Sends requests to one origin with an aiohttp session (unbounded keep-alive pool)."""

    name = "aiohttp"
    transport_errors = (aiohttp.ClientError, OSError)

    def __init__(self, origin: Origin) -> None:
        super().__init__(origin)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3600),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )

    async def _exchange(self, request: Request, url: str, exchange: Exchange) -> None:
        async with self._session.request(
            request.method, url, data=request.body or None, headers=dict(request.headers)
        ) as response:
            exchange.status = response.status
            exchange.headers = {k.lower(): v for k, v in response.headers.items()}
            async for piece in response.content.iter_any():
                exchange.chunks.append((now(), piece))

    async def _close_client(self) -> None:
        await self._session.close()
