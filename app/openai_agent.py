"""`/v1/chat/completions` with model `agent` or `agent/<backend>`: the agent answers, OpenAI-style.

Stateless like the OpenAI API: the client sends the whole conversation each time and nothing is
stored. Tool steps happen inside; the client sees the final answer's tokens stream in.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent.context import AgentContext
from agent.events import AgentEvent, AssistantTurn, TextDelta, Usage
from agent.graph import AgentResult, run_agent
from agent.messages import ChatMessage
from app.agent_factory import agent_context
from app.errors import backend_error_response
from app.openai_proxy import SSE_HEADERS, stream_error_chunk
from app.openai_schemas import ChatCompletionRequest
from app.settings import Settings
from backends.errors import BackendError
from backends.registry import BackendRegistry
from tools.base import Tool


@dataclass(slots=True)
class _Collector:
    """The agent's event sink for this endpoint: answer text goes to a queue, usage adds up."""

    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    usage: Usage = field(default_factory=Usage)

    async def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            self.queue.put_nowait(event.text)
        elif isinstance(event, AssistantTurn) and event.usage:
            self.usage = self.usage + event.usage


def to_agent_input(request: ChatCompletionRequest) -> tuple[str, list[ChatMessage]]:
    """The client's system messages (extra instructions for the agent) and the rest of the conversation."""
    instructions: list[str] = []
    history: list[ChatMessage] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            instructions.append(message.text())
            continue
        entry: ChatMessage = {"role": message.role, "content": message.text()}
        extra = message.model_extra or {}
        if message.role == "assistant" and extra.get("tool_calls"):
            entry["tool_calls"] = extra["tool_calls"]
        if message.role == "tool":
            entry["tool_call_id"] = extra.get("tool_call_id", "")
            entry["name"] = extra.get("name", "")
        history.append(entry)
    return "\n\n".join(p for p in instructions if p), history


async def agent_chat(
    registry: BackendRegistry,
    choice: str | None,
    tools: Mapping[str, Tool],
    settings: Settings,
    request: ChatCompletionRequest,
) -> Response:
    instructions, history = to_agent_input(request)
    collector = _Collector()
    client, answerer = registry.route(choice)
    context = agent_context(
        registry,
        client,
        answerer,
        tools,
        settings,
        collector,
        extra_instructions=instructions,
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=request.temperature,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not request.stream:
        try:
            result = await run_agent(context, history)
        except BackendError as exc:
            return backend_error_response(exc)
        return JSONResponse(_completion(completion_id, created, request.model, result, collector.usage))

    task = asyncio.create_task(_run_then_close(context, history, collector))
    # Wait for the first token (or the end) so that a backend that is down gives a 502, not a 200.
    first = await collector.queue.get()
    if first is None and task.done():
        failure = task.exception()
        if isinstance(failure, BackendError):
            return backend_error_response(failure)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    stream = _stream(first, task, collector, completion_id, created, request.model, include_usage)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _run_then_close(
    context: AgentContext, history: list[ChatMessage], collector: _Collector
) -> AgentResult:
    try:
        return await run_agent(context, history)
    finally:
        collector.queue.put_nowait(None)


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


async def _stream(
    first: str | None,
    task: asyncio.Task[AgentResult],
    collector: _Collector,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    try:
        yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""}, None)
        text = first
        while text is not None:
            yield _chunk(completion_id, created, model, {"content": text}, None)
            text = await collector.queue.get()
        try:
            await task
        except BackendError as exc:
            yield stream_error_chunk(f"backend_{exc.kind}", str(exc))
            return
        except Exception as exc:  # the stream has started: report in-band, as OpenAI does
            yield stream_error_chunk("internal_error", f"the agent failed: {type(exc).__name__}")
            return
        yield _chunk(completion_id, created, model, {}, "stop")
        if include_usage:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(collector.usage),
            }
            yield f"data: {json.dumps(body)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    finally:
        # The client went away (or we are done): never leave the agent running for nobody.
        if not task.done():
            task.cancel()


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _completion(
    completion_id: str, created: int, model: str, result: AgentResult, usage: Usage
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer},
                "finish_reason": "stop" if result.outcome == "answered" else "length",
            }
        ],
        "usage": _usage(usage),
    }
