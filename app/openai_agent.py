"""`/v1/chat/completions` with model `agent` or `agent/<backend>`: the agent answers, OpenAI-style.

Stateless like the OpenAI API: the client sends the whole conversation each time and nothing is
stored. Tool steps happen inside; the client sees the final answer's tokens stream in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent.context import AgentContext
from agent.events import AgentEvent, AssistantTurn, TextDelta, Usage
from agent.graph import AgentResult, run_agent
from agent.messages import ChatMessage
from app.agent_factory import agent_context
from app.errors import backend_error_response
from app.log_context import request_id_var
from app.openai_proxy import SSE_HEADERS
from app.openai_schemas import ChatCompletionRequest
from app.settings import Settings
from app.usage import UsageSink
from backends.client.errors import BackendError
from backends.client.registry import BackendRegistry
from protocol.openai_wire import DONE, ChunkEncoder, completion, error_event, new_completion_id, usage
from tools.base import Tool

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Collector:
    """The agent's event sink for this endpoint: answer text goes to a queue, usage adds up (and each
    model call's usage is recorded for the user's token budget as soon as it is reported)."""

    on_usage: UsageSink
    backend: str
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    usage: Usage = field(default_factory=Usage)

    async def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            self.queue.put_nowait(event.text)
        elif isinstance(event, AssistantTurn) and event.usage:
            self.usage = self.usage + event.usage
            await self.on_usage(event.backend or self.backend, event.usage)


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
    on_usage: UsageSink,
) -> Response:
    instructions, history = to_agent_input(request)
    client, answerer = registry.route(choice)
    collector = _Collector(on_usage, client.name)
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
    completion_id, created = new_completion_id(), int(time.time())
    if not request.stream:
        try:
            result = await run_agent(context, history)
        except BackendError as exc:
            return backend_error_response(exc)
        finish = "stop" if result.outcome == "answered" else "length"
        message = {"role": "assistant", "content": result.answer}
        counts = _usage(collector.usage)
        return JSONResponse(completion(completion_id, created, request.model, message, finish, counts))

    task = asyncio.create_task(_run_then_close(context, history, collector))
    # `_stream` reports the agent's failure in-band; a client that left before it started leaves no
    # one to tell, and the failure must not surface as "Task exception was never retrieved".
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    # Wait for the first token (or the end) so that a backend that is down gives a 502, not a 200.
    try:
        first = await collector.queue.get()
    except asyncio.CancelledError:  # the client left: never leave the agent running for nobody
        task.cancel()
        raise
    if first is None and task.done():
        failure = task.exception()
        if isinstance(failure, BackendError):
            return backend_error_response(failure)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    encoder = ChunkEncoder(completion_id, request.model, created)
    stream = _stream(first, task, collector, encoder, include_usage)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _run_then_close(
    context: AgentContext, history: list[ChatMessage], collector: _Collector
) -> AgentResult:
    try:
        return await run_agent(context, history)
    finally:
        collector.queue.put_nowait(None)


async def _stream(
    first: str | None,
    task: asyncio.Task[AgentResult],
    collector: _Collector,
    encoder: ChunkEncoder,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    try:
        yield encoder.role()
        text = first
        while text is not None:
            yield encoder.content(text)
            text = await collector.queue.get()
        try:
            await task
        except BackendError as exc:
            yield error_event(exc.code, str(exc))
            return
        except Exception:  # the stream has started: report in-band, as OpenAI does
            log.exception("the agent failed in the middle of its answer")
            where = request_id_var.get()
            yield error_event("internal_error", f"the agent failed; it is logged under request id {where}")
            return
        yield encoder.finish("stop")
        if include_usage:
            yield encoder.usage(_usage(collector.usage))
        yield DONE
    finally:
        # The client went away (or we are done): never leave the agent running for nobody.
        if not task.done():
            task.cancel()


def _usage(counts: Usage) -> dict[str, int]:
    return usage(counts.prompt_tokens, counts.completion_tokens)
