"""What the portable engines (aiohttp, httpx) share: one asyncio task per request, user-space stamps.

Receive times are taken when the client library hands the bytes over, so they include the event loop's
delay; the exchange says so (`clock="user"`). A subclass only opens its client, streams one response
into an exchange and closes the client.
"""

from __future__ import annotations

import asyncio
from typing import Self

from bench.clients.clock import now
from bench.clients.exchange import Done, Exchange, Origin, Request


class TaskEngine:
    """Sends requests to one origin, each in its own task; see `AiohttpEngine` and `HttpxEngine`."""

    name: str
    transport_errors: tuple[type[Exception], ...]
    """The exceptions that mean the exchange failed (besides the timeout): the library's, OSError."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, base_url: str) -> Self:
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
                await self._exchange(request, url, exchange)
        except TimeoutError:
            exchange.error = f"no complete response within {timeout_s:g} s"
        except self.transport_errors as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
        exchange.ended_at = exchange.chunks[-1][0] if exchange.chunks and not exchange.error else now()
        on_done(exchange)

    async def _exchange(self, request: Request, url: str, exchange: Exchange) -> None:
        """Send `request` to `url`; fill in the exchange's status and headers, append each piece read."""
        raise NotImplementedError

    async def _close_client(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._close_client()
