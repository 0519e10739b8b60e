"""An async client for one OpenAI-compatible backend, built on a shared aiohttp session.

aiohttp rather than httpx on this path: the proxy and the agent stream every token through here,
and aiohttp's per-chunk cost and connection pool hold up far better at high concurrency.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from backends.config import BackendConfig
from backends.errors import BackendError


def new_http_session() -> aiohttp.ClientSession:
    """The one HTTP session the app shares between backends (created in the app's lifespan)."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


class BackendClient:
    """Speaks the OpenAI chat API to one configured backend."""

    def __init__(self, config: BackendConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self._session = session
        # A backend that scales to zero may hold a request until a replica has started.
        sock_read = max(config.read_timeout_s, config.cold_start_timeout_s or 0)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=config.connect_timeout_s, sock_read=sock_read
        )
        self._cold_starts = 0

    @property
    def starting(self) -> bool:
        """Whether a request is waiting for this backend to start (see `cold_start_timeout_s`)."""
        return self._cold_starts > 0

    def cold_start_began(self) -> None:
        self._cold_starts += 1

    def cold_start_ended(self) -> None:
        self._cold_starts = max(0, self._cold_starts - 1)

    @property
    def name(self) -> str:
        return self.config.name

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = self.config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _error(self, exc: BaseException) -> BackendError:
        if isinstance(exc, TimeoutError):
            return BackendError(self.name, "timeout", "timed out waiting for the backend")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return BackendError(self.name, "unavailable", f"cannot reach {self.config.base_url}: {exc}")
        return BackendError(self.name, "bad_response", f"{type(exc).__name__}: {exc}")

    @asynccontextmanager
    async def post(self, path: str, payload: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST `payload` and yield the open response, whatever its status.

        Connection failures and timeouts before the response arrive become `BackendError`.
        """
        url = f"{self.config.base_url}{path}"
        try:
            async with self._session.post(
                url, data=json.dumps(payload), headers=self.headers(), timeout=self._timeout
            ) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._error(exc) from exc

    async def _raise_for_status(self, response: aiohttp.ClientResponse) -> None:
        if response.status < 400:
            return
        body = (await response.read())[:2000].decode("utf-8", "replace")
        raise BackendError(self.name, "http_error", f"HTTP {response.status}: {body}", status=response.status)

    async def stream_chat(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream a chat completion, yielding each parsed `chat.completion.chunk`.

        Raises `BackendError` on HTTP errors, broken streams, timeouts and malformed chunks.
        """
        body = {**payload, "model": self.config.model, "stream": True}
        body.setdefault("stream_options", {"include_usage": True})
        async with self.post("/chat/completions", body) as response:
            await self._raise_for_status(response)
            done = False
            try:
                async for raw_line in response.content:
                    line = raw_line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise BackendError(
                            self.name, "bad_response", f"malformed chunk: {data[:200]!r}"
                        ) from exc
                    if not isinstance(chunk, dict):
                        raise BackendError(self.name, "bad_response", f"malformed chunk: {data[:200]!r}")
                    if "error" in chunk:
                        raise BackendError(self.name, "http_error", f"error in stream: {chunk['error']}")
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc) from exc
            if not done:
                raise BackendError(self.name, "bad_response", "stream ended without [DONE]")

    async def get_json(self, path: str, *, timeout_s: float | None = None) -> Any:
        """GET a JSON document from the backend (used for `/models` and health checks)."""
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        url = f"{self.config.base_url}{path}"
        try:
            async with self._session.get(url, headers=self.headers(), timeout=timeout) as response:
                await self._raise_for_status(response)
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self._error(exc) from exc
