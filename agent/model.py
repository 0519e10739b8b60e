"""The chat model interface the agent needs, and its implementation over an OpenAI-compatible backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.events import Usage
from agent.messages import ChatMessage
from backends.client import BackendClient
from backends.errors import BackendError

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


def parse_chunk(chunk: dict[str, Any]) -> ModelChunk:
    """Read the parts of an OpenAI `chat.completion.chunk` the agent uses."""
    out = ModelChunk()
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        out.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        out.text += delta.get("content") or ""
        for raw in delta.get("tool_calls") or []:
            function = raw.get("function") or {}
            out.tool_calls.append(
                ToolCallDelta(
                    index=int(raw.get("index") or 0),
                    id=raw.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            )
    return out


RETRY_DELAY_S = 0.5


def _worth_retrying(exc: BackendError) -> bool:
    if exc.kind in ("unavailable", "timeout"):
        return True
    return exc.kind == "http_error" and (exc.status is None or exc.status >= 500 or exc.status == 429)


class BackendChatModel:
    """A `ChatModel` backed by a configured backend, with failover before the first token.

    A call that fails before any output is retried once on the same backend, then tried on the
    fallback backend if one is configured. Once output has streamed, a failure is final: retrying
    would repeat text the user has already seen.
    """

    def __init__(
        self,
        client: BackendClient,
        *,
        temperature: float | None = None,
        fallback: BackendClient | None = None,
    ) -> None:
        self._client = client
        self._fallback = fallback
        self._temperature = temperature

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
        attempts = [self._client, self._client] + ([self._fallback] if self._fallback else [])
        for number, client in enumerate(attempts, start=1):
            started = False
            try:
                async for chunk in client.stream_chat(payload):
                    started = True
                    yield parse_chunk(chunk)
                return
            except BackendError as exc:
                if started or number == len(attempts) or not _worth_retrying(exc):
                    raise
                log.warning(
                    "backend %s failed before its first token (%s); trying again", client.name, exc.kind
                )
                if attempts[number] is client:
                    await asyncio.sleep(RETRY_DELAY_S)
