"""Pick an engine for a base URL: the socket engine for http://, aiohttp for https:// (or on request)."""

from __future__ import annotations

from typing import Literal

from bench.clients.exchange import Engine, Origin

EngineName = Literal["auto", "socket", "aiohttp", "httpx"]


async def open_engine(base_url: str, name: EngineName = "auto") -> Engine:
    """An engine for `base_url`, opened inside the running loop."""
    scheme = Origin.parse(base_url).scheme
    if name == "auto":
        name = "socket" if scheme == "http" else "aiohttp"
    if name == "socket":
        from bench.clients.socket_engine import SocketEngine

        return await SocketEngine.open(base_url)
    if name == "aiohttp":
        from bench.clients.aiohttp_engine import AiohttpEngine

        return await AiohttpEngine.open(base_url)
    from bench.clients.httpx_engine import HttpxEngine

    return await HttpxEngine.open(base_url)
