"""An async client for one OpenAI-compatible backend, built on a shared aiohttp session.

aiohttp rather than httpx on this path: the proxy and the agent stream every token through here,
and aiohttp's per-chunk cost and connection pool hold up far better at high concurrency.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from backends.client.config import BackendConfig
from backends.client.errors import (
    BackendBadResponse,
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
)
from protocol.sse import SseParser, SseTooLarge

EXCERPT_CHARS = 300
"""How much of a backend's own error text a `BackendError` quotes (it is untrusted, and shown)."""


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

    def _error(self, exc: BaseException, *, answering: bool = False) -> BackendError:
        """An aiohttp failure in words a user understands: the class names and aiohttp's own text stay
        in the exception chain (`__cause__`), for the server log. `answering`: the answer had begun."""
        if isinstance(exc, TimeoutError):
            if answering:
                return BackendTimeout(self.name, "it stopped sending in the middle of the answer")
            return BackendTimeout(self.name, "it did not answer in time")
        if answering:  # a dropped connection, or a body cut short (aiohttp's ClientPayloadError)
            return BackendBadResponse(self.name, "the connection broke off in the middle of the answer")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return BackendUnavailable(
                self.name, f"cannot reach {self.config.base_url}{_why_unreachable(exc)}"
            )
        if isinstance(exc, ValueError):
            return BackendBadResponse(self.name, "its answer was not valid JSON")
        return BackendBadResponse(self.name, "its answer could not be read")

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
        body = (await response.read())[:20_000].decode("utf-8", "replace")
        raise BackendHTTPError.answered(self.name, response.status, error_text(body))

    async def stream_chat(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream a chat completion, yielding each parsed `chat.completion.chunk`.

        Raises `BackendError` on HTTP errors, broken streams, timeouts and malformed chunks.
        """
        body = {**payload, "model": self.config.model, "stream": True}
        body.setdefault("stream_options", {"include_usage": True})
        async with self.post("/chat/completions", body) as response:
            await self._raise_for_status(response)
            parser = SseParser()
            try:
                async for piece in response.content.iter_any():
                    for event in parser.feed(piece):
                        data = event.data
                        if data.strip() == "[DONE]":
                            return
                        try:
                            chunk = json.loads(data)
                        except ValueError:
                            chunk = None
                        if not isinstance(chunk, dict):
                            raise BackendBadResponse(
                                self.name, f"it sent a malformed chunk: {_excerpt(data)}"
                            )
                        if "error" in chunk:
                            raise BackendHTTPError(
                                self.name, f"it reported an error mid-answer: {error_text(chunk)}"
                            )
                        yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._error(exc, answering=True) from exc
            except SseTooLarge as exc:
                raise BackendBadResponse(self.name, f"it sent {exc}") from exc
            raise BackendBadResponse(self.name, "its stream ended before the answer was complete")

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


def _why_unreachable(exc: aiohttp.ClientConnectionError) -> str:
    """Why a connection failed, in a few words (aiohttp's own text names classes and addresses)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return " (its host name is not known)"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return " (the TLS handshake failed)"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError):
        return " (the connection was refused)"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return " (it closed the connection)"
    return ""


def error_text(body: str | dict[str, object]) -> str:
    """The message of an OpenAI-style error (`{"error": {"message": ...}}`, or `{"error": "..."}`), else
    the body itself: bounded, on one line, as a backend's own words may be long, or HTML."""
    document: object = body
    if isinstance(body, str):
        try:
            document = json.loads(body)
        except ValueError:
            return _excerpt(body)
    error = document.get("error", document) if isinstance(document, dict) else document
    message = error.get("message") if isinstance(error, dict) else error
    return _excerpt(message if isinstance(message, str) else json.dumps(error, ensure_ascii=False))


def _excerpt(text: str) -> str:
    line = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return line if len(line) <= EXCERPT_CHARS else line[: EXCERPT_CHARS - 1] + "…"
