"""`/v1/chat/completions` for a backend model: the request goes through, the stream comes back byte for byte.

Nothing is re-encoded on the way back, which is what keeps this path nearly free. Only the usage the
backend reports is read on the way, for the token budgets: chatstack asks for it
(`stream_options.include_usage`) when the client did not, and then leaves that usage-only event out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from fastapi.responses import Response, StreamingResponse

from agent.events import Usage
from app.errors import backend_error_response
from app.metrics import Metrics
from app.usage import UsageSink, clamp_usage
from backends.client.errors import (
    BackendBadResponse,
    BackendError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnavailable,
)
from backends.client.http_client import BackendClient, error_text
from protocol.openai_wire import error_event

log = logging.getLogger(__name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')
MAX_HELD_LINE = 16_384
"""A usage-only event is a few hundred bytes: a longer unfinished line is passed on at once."""


def usage_of(value: object) -> Usage | None:
    """A `usage` object of the OpenAI format as a `Usage`, or None if it is not one."""
    if not isinstance(value, dict):
        return None
    return clamp_usage(value.get("prompt_tokens"), value.get("completion_tokens"))


def usage_in_body(body: bytes) -> Usage | None:
    """The top-level `usage` of a chat completion, found from the end without parsing the whole body."""
    last = _USAGE_KEY.match(body, max(body.rfind(b'"usage"'), 0))
    if last is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(body[last.end() - 1 :].decode("utf-8", "replace"))
    except ValueError:
        return None
    return usage_of(value)


class StreamUsage:
    """Finds the usage a backend reports in a streamed chat completion as the stream is relayed.

    Lines pass through unchanged; only lines that contain a `"usage": {` are parsed. With `strip`,
    the usage-only event (no choices) is left out, and the bytes of a line not yet ended are held back
    until it ends (a line longer than `MAX_HELD_LINE` cannot be that event, and is passed on at once).
    """

    def __init__(self, *, strip: bool) -> None:
        self.strip = strip
        self.usage: Usage | None = None
        self.final = False
        """A usage-only event was seen: the backend's last word on the call's usage."""
        self._held = b""
        self._in_long_line = False
        self._drop_blank = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the backend; return the bytes to pass on now."""
        idle = not (self._held or self._in_long_line or self._drop_blank)
        if idle and data.endswith(b"\n") and b'"usage"' not in data:
            return data  # nearly every chunk: whole lines, no usage
        passed = b""
        if self._in_long_line:
            end = data.find(b"\n")
            if end < 0:
                return data
            passed, data = data[: end + 1], data[end + 1 :]
            self._in_long_line = False
        buffer = self._held + data if self._held else data
        cut = buffer.rfind(b"\n") + 1
        lines, rest = buffer[:cut], buffer[cut:]
        self._held = b""
        if len(rest) > MAX_HELD_LINE:
            self._in_long_line = True
        else:
            self._held, rest = rest, b""
        if lines and (self._drop_blank or _USAGE_KEY.search(lines)):
            lines = self._scan(lines)
        if not self.strip:
            return data if not passed else passed + data
        return passed + lines + rest if passed or rest else lines

    def finish(self) -> bytes:
        """The end of the stream: what is still held back (a last line with no line break)."""
        held, self._held = self._held, b""
        kept = self._scan(held) if held else b""
        return kept if self.strip else b""

    def _scan(self, lines: bytes) -> bytes:
        kept: list[bytes] = []
        for line in lines.splitlines(keepends=True):
            if self._drop_blank:
                self._drop_blank = False
                if not line.strip():
                    continue
            if _USAGE_KEY.search(line) and self._read_usage(line) and self.strip:
                self._drop_blank = True  # and the blank line that ends the event
                continue
            kept.append(line)
        return b"".join(kept)

    def _read_usage(self, line: bytes) -> bool:
        """Note the usage the line reports; True if it is a usage-only event."""
        text = line.strip()
        if not text.startswith(b"data:"):
            return False
        try:
            chunk = json.loads(text[5:])
        except ValueError:
            return False
        usage = usage_of(chunk.get("usage")) if isinstance(chunk, dict) else None
        if usage is None:
            return False
        self.usage = usage
        if not chunk.get("choices"):
            self.final = True
            return True
        return False


async def proxy_chat(
    client: BackendClient, payload: dict[str, Any], metrics: Metrics, on_usage: UsageSink
) -> Response:
    payload = {**payload, "model": client.config.model}
    options = payload.get("stream_options") if isinstance(payload.get("stream_options"), dict) else {}
    client_wants_usage = bool(options and options.get("include_usage"))
    if payload.get("stream") and not client_wants_usage:
        payload["stream_options"] = {**(options or {}), "include_usage": True}
    stack = AsyncExitStack()
    try:
        response = await stack.enter_async_context(client.post("/chat/completions", payload))
        if response.status >= 400:
            body = (await _read_body(response, client.name))[:20_000].decode("utf-8", "replace")
            raise BackendHTTPError.answered(client.name, response.status, error_text(body))
        if not payload.get("stream"):
            content = await _read_body(response, client.name)
            await stack.aclose()
            usage = usage_in_body(content)
            if usage is not None:
                await on_usage(client.name, usage)
            return Response(content, media_type="application/json")
    except BackendError as exc:
        await stack.aclose()
        log.warning("proxied request failed: %s (%r)", exc, exc.__cause__)
        metrics.backend_errors.labels(exc.backend, exc.kind).inc()
        return backend_error_response(exc)
    scanner = StreamUsage(strip=not client_wants_usage)
    relay = _relay(response, stack, client.name, metrics, scanner, on_usage)
    return StreamingResponse(relay, media_type="text/event-stream", headers=SSE_HEADERS)


async def _read_body(response: aiohttp.ClientResponse, backend: str) -> bytes:
    """The whole body; one that breaks off after the status came is the backend's failure."""
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        how = "stopped sending" if isinstance(exc, TimeoutError) else "broke off"
        raise BackendBadResponse(backend, f"its answer {how} before it was complete") from exc


async def _relay(
    response: aiohttp.ClientResponse,
    stack: AsyncExitStack,
    backend: str,
    metrics: Metrics,
    scanner: StreamUsage,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    metrics.active_streams.inc()
    recorded = False
    try:
        async for data in response.content.iter_any():
            out = scanner.feed(data)
            if scanner.final and not recorded and scanner.usage is not None:
                # Before the stream's end reaches the client: a client that asks for its usage
                # right after `[DONE]` sees this call counted.
                recorded = True
                await on_usage(backend, scanner.usage)
            if out:
                yield out
        tail = scanner.finish()
        if not recorded and scanner.usage is not None:
            recorded = True
            await on_usage(backend, scanner.usage)
        if tail:
            yield tail
    except (aiohttp.ClientError, TimeoutError) as exc:
        failure: BackendError = (
            BackendTimeout(backend, "it stopped sending in the middle of the answer")
            if isinstance(exc, TimeoutError)
            else BackendUnavailable(backend, "the connection broke off in the middle of the answer")
        )
        log.warning("proxied stream failed: %s (%r)", failure, exc)  # aiohttp's words: for the log only
        metrics.backend_errors.labels(backend, failure.kind).inc()
        yield error_event(failure.code, str(failure))
    finally:
        metrics.active_streams.dec()
        await stack.aclose()
