"""Turns what the agent reports into stored messages, SSE events and the run's timings."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from agent.events import (
    AgentEvent,
    AssistantTurn,
    BackendReady,
    BackendStarting,
    TextDelta,
    ToolFinished,
    ToolStarted,
    Usage,
)
from agent.graph import AgentResult
from agent.messages import ToolCall
from app.event_log import RunEventLog
from app.metrics import Metrics
from app.store import Store

CANCELLED_TOOL_RESULT = "Error: the user stopped the answer before this tool call finished."


class RunRecorder:
    """One per run. The agent's event sink, and the writer of the run's outcome."""

    def __init__(
        self,
        store: Store,
        log: RunEventLog,
        *,
        run_id: str,
        conversation_id: str,
        backend: str,
        metrics: Metrics,
        known_tools: frozenset[str],
    ) -> None:
        self.metrics = metrics
        self.known_tools = known_tools
        self.store = store
        self.log = log
        self.run_id = run_id
        self.conversation_id = conversation_id
        self.backend = backend
        self.started = time.perf_counter()
        self.ttft_ms: float | None = None
        self.llm_calls = 0
        self.tool_calls = 0
        self.usage: Usage | None = None
        self._partial: list[str] = []
        self._open_calls: dict[str, ToolCall] = {}
        self.finished = False

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        self.log.append(type_, data)

    def started_event(self) -> None:
        self.emit(
            "run.started",
            {"run_id": self.run_id, "conversation_id": self.conversation_id, "backend": self.backend},
        )

    async def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            if self.ttft_ms is None:
                self.ttft_ms = self._elapsed_ms()
            self._partial.append(event.text)
            self.emit("message.delta", {"text": event.text})
        elif isinstance(event, AssistantTurn):
            await self._assistant_turn(event)
        elif isinstance(event, ToolStarted):
            self.tool_calls += 1
            self._open_calls[event.call.id] = event.call
            self.emit(
                "tool.started",
                {
                    "call_id": event.call.id,
                    "name": event.call.name,
                    "arguments": event.arguments if event.arguments is not None else event.call.arguments,
                },
            )
        elif isinstance(event, ToolFinished):
            await self._tool_finished(event)
        elif isinstance(event, BackendStarting):
            self.emit("backend.starting", {"backend": event.backend, "timeout_s": event.timeout_s})
        elif isinstance(event, BackendReady):
            self.emit("backend.ready", {"backend": event.backend, "waited_ms": event.waited_ms})

    async def _assistant_turn(self, event: AssistantTurn) -> None:
        self.llm_calls += 1
        if event.usage:
            self.usage = event.usage if self.usage is None else self.usage + event.usage
        self._partial.clear()
        tool_calls = [c.to_openai() for c in event.tool_calls] or None
        row = await self.store.add_message(
            conversation_id=self.conversation_id,
            run_id=self.run_id,
            role="assistant",
            content=event.content,
            tool_calls=tool_calls,
            status="complete",
            backend=event.backend or self.backend,
            prompt_tokens=event.usage.prompt_tokens if event.usage else None,
            completion_tokens=event.usage.completion_tokens if event.usage else None,
        )
        self.emit(
            "message.completed",
            {
                "message_id": row.id,
                "content": event.content,
                "status": "complete",
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in event.tool_calls
                ],
                "usage": asdict(event.usage) if event.usage else None,
            },
        )

    async def _tool_finished(self, event: ToolFinished) -> None:
        self._open_calls.pop(event.call.id, None)
        tool_label = event.call.name if event.call.name in self.known_tools else "unknown"
        self.metrics.tool_duration.labels(tool_label).observe(event.duration_ms / 1000)
        if event.error:
            self.metrics.tool_errors.labels(tool_label).inc()
        sources = [asdict(s) for s in event.sources]
        await self.store.add_message(
            conversation_id=self.conversation_id,
            run_id=self.run_id,
            role="tool",
            content=event.content,
            tool_call_id=event.call.id,
            name=event.call.name,
            sources=sources or None,
            status="error" if event.error else "complete",
            backend=self.backend,
            duration_ms=event.duration_ms,
        )
        self.emit(
            "tool.finished",
            {
                "call_id": event.call.id,
                "name": event.call.name,
                "output": event.content,
                "sources": sources,
                "error": event.error,
                "duration_ms": event.duration_ms,
            },
        )

    # outcomes

    async def completed(self, result: AgentResult) -> None:
        if result.outcome == "step_limit":
            message = (
                "The agent reached its step limit before it could finish; ask again or simplify the question."
            )
            self.emit("run.error", {"code": "step_limit", "message": message})
            await self._finish("failed", "step_limit", message)
        else:
            await self._finish("completed")

    async def cancelled(self, *, interrupted: bool) -> None:
        """Keep what was produced, close tool calls left open, and end the run."""
        status = "interrupted" if interrupted else "cancelled"
        await self._save_partial(status)
        for call in list(self._open_calls.values()):
            await self._tool_finished(
                ToolFinished(call, CANCELLED_TOOL_RESULT, [], "cancelled", round(self._elapsed_ms(), 2))
            )
        if interrupted:
            message = "The server shut down while this answer was running."
            self.emit("run.error", {"code": "interrupted", "message": message})
            await self._finish("interrupted", "interrupted", message)
        else:
            await self._finish("cancelled")

    async def failed(self, code: str, message: str) -> None:
        await self._save_partial("error")
        for call in list(self._open_calls.values()):
            await self._tool_finished(ToolFinished(call, CANCELLED_TOOL_RESULT, [], "run failed", 0.0))
        self.emit("run.error", {"code": code, "message": message})
        await self._finish("failed", code, message)

    async def _save_partial(self, status: str) -> None:
        text = "".join(self._partial)
        self._partial.clear()
        if not text and status == "error":
            return  # the run.error event says what happened; an empty answer adds nothing
        # A stop is recorded even with no text yet, so the conversation shows where it was stopped.
        row = await self.store.add_message(
            conversation_id=self.conversation_id,
            run_id=self.run_id,
            role="assistant",
            content=text,
            status=status,
            backend=self.backend,
        )
        self.emit(
            "message.completed",
            {"message_id": row.id, "content": text, "status": status, "tool_calls": [], "usage": None},
        )

    async def _finish(
        self, status: str, error_code: str | None = None, error_message: str | None = None
    ) -> None:
        total_ms = round(self._elapsed_ms(), 2)
        ttft_ms = round(self.ttft_ms, 2) if self.ttft_ms is not None else None
        usage = asdict(self.usage) if self.usage else None
        await self.store.finish_run(
            self.run_id,
            status=status,
            error_code=error_code,
            error_message=error_message,
            ttft_ms=ttft_ms,
            total_ms=total_ms,
            llm_calls=self.llm_calls,
            tool_calls=self.tool_calls,
            prompt_tokens=self.usage.prompt_tokens if self.usage else None,
            completion_tokens=self.usage.completion_tokens if self.usage else None,
        )
        self.finished = True
        m = self.metrics
        m.runs.labels(self.backend, status).inc()
        m.run_duration.labels(self.backend).observe(total_ms / 1000)
        m.run_llm_calls.labels(self.backend).observe(self.llm_calls)
        m.run_tool_calls.labels(self.backend).observe(self.tool_calls)
        if ttft_ms is not None:
            m.run_ttft.labels(self.backend).observe(ttft_ms / 1000)
        self.emit(
            "run.finished",
            {
                "status": status,
                "timings": {
                    "ttft_ms": ttft_ms,
                    "total_ms": total_ms,
                    "llm_calls": self.llm_calls,
                    "tool_calls": self.tool_calls,
                },
                "usage": usage,
            },
        )

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
