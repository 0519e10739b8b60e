"""The chat model interface the agent needs, and its implementation over an OpenAI-compatible backend."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.events import BackendReady, BackendStarting, EventSink, Usage
from agent.messages import ChatMessage
from backends.client.errors import (
    BackendBadResponse,
    BackendError,
    BackendHTTPError,
    BackendStartTimeout,
    BackendTimeout,
    BackendUnavailable,
)
from backends.client.http_client import BackendClient

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a streamed native tool call; fragments with the same index add up."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ModelChunk:
    text: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None


class ChatModel(Protocol):
    """Streams one chat completion."""

    @property
    def name(self) -> str:
        """The backend that answers, for the record."""
        ...

    def stream(
        self, messages: list[ChatMessage], *, tools: list[dict[str, Any]] | None, max_tokens: int | None
    ) -> AsyncIterator[ModelChunk]: ...


def parse_chunk(chunk: dict[str, Any], backend: str) -> ModelChunk:
    """Read the parts of an OpenAI `chat.completion.chunk` the agent uses.

    A backend's chunk is untrusted: fields of the wrong type raise `BackendBadResponse`, never a
    `TypeError` or `ValueError` that would end the run as chatstack's own internal error.
    """
    try:
        return _read_chunk(chunk)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BackendBadResponse(backend, "it sent a chunk that is not a chat completion chunk") from exc


def _read_chunk(chunk: dict[str, Any]) -> ModelChunk:
    out = ModelChunk()
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        out.usage = Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        out.text += _text(delta.get("content"))
        for raw in delta.get("tool_calls") or []:
            function = raw.get("function") or {}
            out.tool_calls.append(
                ToolCallDelta(
                    index=_count(raw.get("index")),
                    id=_optional_text(raw.get("id")),
                    name=_optional_text(function.get("name")),
                    arguments=_text(function.get("arguments")),
                )
            )
    return out


def _count(value: object) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"expected a count, got {value!r:.40}")
    return value


def _text(value: object) -> str:
    return _optional_text(value) or ""


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            # A lone surrogate (a JSON escape like \ud800 that is not text): no stream, log or
            # database could encode it later, so it becomes "?" here, where it enters.
            value = value.encode(errors="replace").decode()
    return value


RETRY_DELAY_S = 0.5
STARTING_NOTICE_S = 2.0
"""How long a backend that scales to zero may stay silent before the run reports it as starting."""
COLD_RETRY_MAX_DELAY_S = 5.0


def _worth_retrying(exc: BackendError) -> bool:
    if isinstance(exc, BackendUnavailable | BackendTimeout):
        return True
    return isinstance(exc, BackendHTTPError) and (
        exc.status is None or exc.status >= 500 or exc.status == 429
    )


class _NoOutput(Exception):
    """A backend failed before its first token (so another backend may still take over)."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


class BackendChatModel:
    """A `ChatModel` backed by a configured backend, with failover before the first token.

    A call that fails before any output is retried once on the same backend (or, on a backend that
    scales to zero, until its cold-start time is up), then tried on the fallback backend if one is
    configured. Once output has streamed, a failure is final: retrying would repeat text the user has
    already seen.
    """

    def __init__(
        self,
        client: BackendClient,
        *,
        temperature: float | None = None,
        fallback: BackendClient | None = None,
        emit: EventSink | None = None,
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._temperature = temperature
        self._emit = emit

    @property
    def name(self) -> str:
        return self._client.name

    async def stream(
        self, messages: list[ChatMessage], *, tools: list[dict[str, Any]] | None, max_tokens: int | None
    ) -> AsyncIterator[ModelChunk]:
        payload: dict[str, Any] = {"messages": messages}
        if tools:
            payload["tools"] = tools
        if max_tokens:
            payload["max_tokens"] = max_tokens
        if self._temperature is not None:
            payload["temperature"] = self._temperature
        clients = [self._client] + ([self._fallback] if self._fallback else [])
        for number, client in enumerate(clients, start=1):
            try:
                async for chunk in self._stream_from(client, payload):
                    yield chunk
                return
            except _NoOutput as failure:
                if number == len(clients):
                    raise failure.error from None
                log.warning("backend %s failed before its first token (%s); falling back to %s",
                            client.name, failure.error.kind, clients[number].name)  # fmt: skip

    async def _stream_from(self, client: BackendClient, payload: dict[str, Any]) -> AsyncIterator[ModelChunk]:
        """Stream one reply from `client`, retrying failures before the first token.

        Raises `_NoOutput` when the backend produced nothing, `BackendError` when it failed mid-stream.
        """
        cold_start_s = client.config.cold_start_timeout_s
        if cold_start_s is not None:
            async for reply_chunk in self._stream_after_cold_start(client, payload, cold_start_s):
                yield reply_chunk
            return
        for attempt in (1, 2):
            started = False
            try:
                async for chunk in client.stream_chat(payload):
                    started = True
                    yield parse_chunk(chunk, client.name)
                return
            except BackendError as exc:
                if started:
                    raise
                if attempt == 2 or not _worth_retrying(exc):
                    raise _NoOutput(exc) from exc
                log.warning(
                    "backend %s failed before its first token (%s); trying again", client.name, exc.kind
                )
                await asyncio.sleep(RETRY_DELAY_S)

    async def _stream_after_cold_start(
        self, client: BackendClient, payload: dict[str, Any], cold_start_s: float
    ) -> AsyncIterator[ModelChunk]:
        """Wait up to `cold_start_s` for a backend that scales to zero: a request may be held, or
        refused, while a replica starts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cold_start_s
        notice = _ColdStartNotice(client, cold_start_s, self._emit)
        delay = RETRY_DELAY_S
        try:
            while True:
                started = False
                try:
                    async with asyncio.timeout_at(deadline) as scope:
                        async for chunk in client.stream_chat(payload):
                            if not started:
                                started = True
                                scope.reschedule(None)
                                await notice.answered()
                            yield parse_chunk(chunk, client.name)
                    return
                except TimeoutError:
                    raise _NoOutput(_start_timeout(client, cold_start_s)) from None
                except BackendError as exc:
                    if started:
                        raise
                    if not _worth_retrying(exc):
                        raise _NoOutput(exc) from exc
                    if loop.time() + delay >= deadline:
                        raise _NoOutput(_start_timeout(client, cold_start_s)) from exc
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, COLD_RETRY_MAX_DELAY_S)
        finally:
            notice.close()


class _ColdStartNotice:
    """Reports a backend as starting once it has been silent for `STARTING_NOTICE_S`, until it answers."""

    def __init__(self, client: BackendClient, timeout_s: float, emit: EventSink | None) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._emit = emit
        self._began = time.monotonic()
        self._given = False
        self._task = asyncio.create_task(self._announce())

    async def _announce(self) -> None:
        await asyncio.sleep(STARTING_NOTICE_S)
        self._given = True
        self._client.cold_start_began()
        if self._emit is not None:
            await self._emit(BackendStarting(self._client.name, self._timeout_s))

    async def answered(self) -> None:
        given = self._given
        self.close()
        if given and self._emit is not None:
            await self._emit(
                BackendReady(self._client.name, round((time.monotonic() - self._began) * 1000, 2))
            )

    def close(self) -> None:
        self._task.cancel()
        if self._given:
            self._given = False
            self._client.cold_start_ended()


def _start_timeout(client: BackendClient, cold_start_s: float) -> BackendError:
    return BackendStartTimeout(client.name, f"the backend did not start within {cold_start_s:g} s")
