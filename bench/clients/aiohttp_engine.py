"""The portable engine: aiohttp (TLS, proxies, anything the socket engine does not speak).

Receive times are taken when aiohttp hands the bytes over, so they include the event loop's delay;
the exchange says so (`clock="user"`).
"""

from __future__ import annotations

import asyncio

import aiohttp

from bench.clients.clock import now
from bench.clients.exchange import Done, Exchange, Origin, Request


class AiohttpEngine:
    """Sends requests to one origin with an aiohttp session (unbounded keep-alive pool)."""

    name = "aiohttp"

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3600),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, base_url: str) -> AiohttpEngine:
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
                async with self._session.request(
                    request.method, url, data=request.body or None, headers=dict(request.headers)
                ) as response:
                    exchange.status = response.status
                    exchange.headers = {k.lower(): v for k, v in response.headers.items()}
                    async for piece in response.content.iter_any():
                        exchange.chunks.append((now(), piece))
        except TimeoutError:
            exchange.error = f"no complete response within {timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
        exchange.ended_at = exchange.chunks[-1][0] if exchange.chunks and not exchange.error else now()
        on_done(exchange)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._session.close()
