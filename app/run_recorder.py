"""Turns what the agent reports into stored messages, SSE events and the run's timings.

The database may fail at any point of a run. What it did not take is kept here, in the run's order,
together with the run's outcome, until `RunManager` stores it; the events are complete in memory
whatever the database does, so a run's stream always ends with `run.finished`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.events import (
    AgentEvent,
    ApprovalRequired,
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
from app.db.models import Run
from app.event_log import RunEventLog
from app.metrics import Metrics
from app.store import DATABASE_ERRORS, Store, describe_database_error
from app.usage import UsageSink
from protocol import run_events

log = logging.getLogger(__name__)

CANCELLED_TOOL_RESULT = "Error: the user stopped the answer before this tool call finished."
DATABASE_DOWN_MESSAGE = (
    "chatstack's database stopped answering, so this answer stopped here. What it wrote so far is kept "
    "and saved once the database is back; try again in a moment."
)
INTERNAL_ERROR_MESSAGE = "chatstack hit an internal error while answering; see the server log."


class RunStorageFailed(Exception):
    """The database did not take a step of the run: the run stops there, keeping what it produced."""


@dataclass(slots=True)
class RunOutcome:
    """How a run ended, kept until the database has it."""

    status: str
    fields: dict[str, Any]
    """The run's final columns."""
    finished: dict[str, Any]
    """The data of its `run.finished` event (`RunFinished.to_data()`)."""
    announced: bool = False
    """`run.finished` is in the event log."""
    stored: bool = False


class RunRecorder:
    """One per run. The agent's event sink, and the keeper of the run's outcome."""

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
        on_usage: UsageSink | None = None,
        tool_servers: Mapping[str, str] | None = None,
        approval_timeout_s: float = 600.0,
    ) -> None:
        self.tool_servers = tool_servers or {}
        """Where each tool comes from (`builtin` or an MCP server), for approval requests."""
        self.approval_timeout_s = approval_timeout_s
        self.approvals: list[dict[str, Any]] = []
        """The calls this run stops to ask about, as `tool_approvals` rows the database did not take
        yet (they are stored with its pause then)."""
        self.asked: list[str] = []
        """Ids of the calls this run asked about, in order."""
        self.approval_wait_ms: float | None = None
        """Time the run waited for approvals before (set when a paused run resumes)."""
        self.on_usage = on_usage
        """Where each model call's usage goes for the user's token budget."""
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
        self.unsaved: list[dict[str, Any]] = []
        """Messages the database has not taken yet, in order: each write stores them first."""
        self.database_down = False
        """The last write failed: while the run ends, it keeps its messages instead of waiting on it."""
        self.outcome: RunOutcome | None = None
        self._ending = False
        self._writes = asyncio.Lock()  # tools finish in parallel; their messages keep one order

    def emit(self, event: run_events.EventData) -> None:
        self.log.append(event.TYPE, event.to_data())

    def started_event(self) -> None:
        self.emit(
            run_events.RunStarted(
                run_id=self.run_id, conversation_id=self.conversation_id, backend=self.backend
            )
        )

    async def __call__(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            if self.ttft_ms is None:
                self.ttft_ms = self._elapsed_ms()
            self._partial.append(event.text)
            self.emit(run_events.MessageDelta(text=event.text))
        elif isinstance(event, AssistantTurn):
            await self._assistant_turn(event)
        elif isinstance(event, ToolStarted):
            self.tool_calls += 1
            self._open_calls[event.call.id] = event.call
            self.emit(
                run_events.ToolStarted(
                    call_id=event.call.id,
                    name=event.call.name,
                    arguments=event.arguments if event.arguments is not None else event.call.arguments,
                    server=self.tool_servers.get(event.call.name, ""),
                )
            )
        elif isinstance(event, ToolFinished):
            await self._tool_finished(event)
        elif isinstance(event, BackendStarting):
            self.emit(run_events.BackendStarting(backend=event.backend, timeout_s=event.timeout_s))
        elif isinstance(event, BackendReady):
            self.emit(run_events.BackendReady(backend=event.backend, waited_ms=event.waited_ms))
        elif isinstance(event, ApprovalRequired):
            await self._approval_required(event)

    async def _approval_required(self, event: ApprovalRequired) -> None:
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.approval_timeout_s)
        server = self.tool_servers.get(event.call.name, "builtin")
        self.asked.append(event.call.id)
        row = {
            "run_id": self.run_id,
            "call_id": event.call.id,
            "name": event.call.name[:64],
            "server": server[:64],
            "arguments": event.arguments,
            "arguments_text": event.call.arguments,
            "status": "pending",
            "created_at": now,
            "expires_at": expires_at,
        }
        # Stored before the request is announced: a user who answers at once finds the call waiting,
        # even while the rest of this turn's calls still run (the run pauses once they are done).
        async with self._writes:
            try:
                await self.store.add_approvals([row])
            except DATABASE_ERRORS as exc:
                log.warning("could not store a tool approval request yet: %s", describe_database_error(exc))
                self.approvals.append(row)
        self.emit(
            run_events.ToolApprovalRequired(
                call_id=event.call.id,
                name=event.call.name,
                server=server,
                arguments=event.arguments if event.arguments is not None else event.call.arguments,
                expires_at=expires_at.isoformat(),
            )
        )

    def approval_resolved(
        self, call_id: str, approved: bool, by: str | None, reason: str | None, waited_ms: float | None
    ) -> None:
        self.emit(
            run_events.ToolApprovalResolved(
                call_id=call_id, approved=approved, by=by or "", reason=reason, waited_ms=waited_ms
            )
        )

    async def cancelled_while_waiting(self, calls: list[ToolCall]) -> None:
        """End, as cancelled, a paused run that was stopped: its waiting calls get a result saying so."""
        for call in calls:
            self._open_calls[call.id] = call
        await self.cancelled(interrupted=False)

    def resumed(self, run: Run, last_approval_wait_ms: float | None) -> None:
        """Continue the counts of a paused run taken up again (`run`: its stored row): its timings
        cover the whole run, from its start to its end, the wait included and reported apart."""
        self.llm_calls = run.llm_calls
        self.tool_calls = run.tool_calls
        self.ttft_ms = run.ttft_ms
        if run.prompt_tokens is not None or run.completion_tokens is not None:
            self.usage = Usage(run.prompt_tokens or 0, run.completion_tokens or 0)
        since_start = (datetime.now(UTC) - run.created_at).total_seconds()
        self.started = time.perf_counter() - max(0.0, since_start)
        self.approval_wait_ms = last_approval_wait_ms

    def _row(self, **fields: Any) -> dict[str, Any]:
        """A message of this run, as the columns to store."""
        return {
            "conversation_id": self.conversation_id,
            "run_id": self.run_id,
            "created_at": datetime.now(UTC),
            **fields,
        }

    async def _store_message(self, row: dict[str, Any]) -> int | None:
        """Store a message of the run (after any kept ones); its id, or None if it is kept in memory."""
        async with self._writes:
            if self._ending and self.database_down:
                self.unsaved.append(row)
                return None
            rows = [*self.unsaved, row]
            try:
                ids = await self.store.add_messages(rows)
            except DATABASE_ERRORS as exc:
                if not self.database_down:
                    reason = describe_database_error(exc)
                    log.warning("could not store a message of the run, keeping it in memory: %s", reason)
                self.database_down = True
                self.unsaved = rows
                return None
            self.database_down = False
            self.unsaved = []
            return ids[-1]

    async def _assistant_turn(self, event: AssistantTurn) -> None:
        self.llm_calls += 1
        if event.usage:
            self.usage = event.usage if self.usage is None else self.usage + event.usage
        self._partial.clear()
        tool_calls = [c.to_openai() for c in event.tool_calls] or None
        message_id = await self._store_message(
            self._row(
                role="assistant",
                content=event.content,
                tool_calls=tool_calls,
                status="complete",
                backend=event.backend or self.backend,
                prompt_tokens=event.usage.prompt_tokens if event.usage else None,
                completion_tokens=event.usage.completion_tokens if event.usage else None,
            )
        )
        self.emit(
            run_events.MessageCompleted(
                message_id=message_id,
                content=event.content,
                status="complete",
                tool_calls=[
                    run_events.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in event.tool_calls
                ],
                usage=_usage(event.usage),
            )
        )
        if event.usage and self.on_usage is not None:
            await self.on_usage(event.backend or self.backend, event.usage)
        if message_id is None:
            # A turn is the run's checkpoint: going on with the database down would only pile up more
            # to lose. (A tool's result that was not stored is simply stored with the next write.)
            raise RunStorageFailed("the database did not store the answer's latest step")

    async def _tool_finished(self, event: ToolFinished) -> None:
        self._open_calls.pop(event.call.id, None)
        tool_label = event.call.name if event.call.name in self.known_tools else "unknown"
        self.metrics.tool_duration.labels(tool_label).observe(event.duration_ms / 1000)
        if event.error:
            self.metrics.tool_errors.labels(tool_label).inc()
        sources = [run_events.Source(title=s.title, url=s.url, snippet=s.snippet) for s in event.sources]
        await self._store_message(self._tool_message(event, sources))
        self._tool_finished_event(event, sources)

    def _tool_message(self, event: ToolFinished, sources: list[run_events.Source]) -> dict[str, Any]:
        return self._row(
            role="tool",
            content=event.content,
            tool_call_id=event.call.id,
            name=event.call.name,
            sources=[s.to_data() for s in sources] or None,
            status="error" if event.error else "complete",
            backend=self.backend,
            duration_ms=event.duration_ms,
        )

    def _tool_finished_event(self, event: ToolFinished, sources: list[run_events.Source]) -> None:
        self.emit(
            run_events.ToolFinished(
                call_id=event.call.id,
                name=event.call.name,
                output=event.content,
                sources=sources,
                error=event.error,
                duration_ms=event.duration_ms,
                server=self.tool_servers.get(event.call.name, ""),
                attachments=[
                    run_events.ToolAttachment(kind=a.kind, mime_type=a.mime_type, size=a.size, name=a.name)
                    for a in event.attachments
                ],
            )
        )

    # outcomes: each one ends with `self.outcome` set; `RunManager` stores it and emits `run.finished`

    async def completed(self, result: AgentResult) -> None:
        self._ending = True
        if result.outcome == "awaiting_approval":
            self._pause()
        elif result.outcome == "step_limit":
            message = (
                "The agent reached its step limit before it could finish; ask again or simplify the question."
            )
            self.emit(run_events.RunError(code="step_limit", message=message))
            self._conclude("failed", "step_limit", message)
        else:
            self._conclude("completed")

    async def cancelled(self, *, interrupted: bool) -> None:
        """Keep what was produced, close tool calls left open, and end the run."""
        self._ending = True
        status = "interrupted" if interrupted else "cancelled"
        await self._save_partial(status)
        for call in list(self._open_calls.values()):
            await self._tool_finished(
                ToolFinished(call, CANCELLED_TOOL_RESULT, [], "cancelled", round(self._elapsed_ms(), 2))
            )
        if interrupted:
            message = "The server shut down while this answer was running."
            self.emit(run_events.RunError(code="interrupted", message=message))
            self._conclude("interrupted", "interrupted", message)
        else:
            self._conclude("cancelled")

    async def failed(self, code: str, message: str) -> None:
        self._ending = True
        await self._save_partial("error")
        for call in list(self._open_calls.values()):
            await self._tool_finished(ToolFinished(call, CANCELLED_TOOL_RESULT, [], "run failed", 0.0))
        self.emit(run_events.RunError(code=code, message=message))
        self._conclude("failed", code, message)

    def abandon(self, code: str, message: str) -> None:
        """Fail the run in memory alone, if ending it otherwise did not get as far as an outcome (it was
        cancelled again meanwhile, or hit a bug): nothing here waits or raises."""
        if self.outcome is not None:
            return
        self._ending = True
        text = "".join(self._partial)
        self._partial.clear()
        if text:
            self.unsaved.append(self._partial_message(text, "error"))
            self._partial_event(None, text, "error")
        for call in list(self._open_calls.values()):
            self._open_calls.pop(call.id)
            finished = ToolFinished(call, CANCELLED_TOOL_RESULT, [], "run failed", 0.0)
            self.unsaved.append(self._tool_message(finished, []))
            self._tool_finished_event(finished, [])
        self.emit(run_events.RunError(code=code, message=message))
        self._conclude("failed", code, message)

    async def _save_partial(self, status: str) -> None:
        text = "".join(self._partial)
        if not text and status == "error":
            return  # the run.error event says what happened; an empty answer adds nothing
        # A stop is recorded even with no text yet, so the conversation shows where it was stopped.
        message_id = await self._store_message(self._partial_message(text, status))
        self._partial.clear()  # only now: cancelled meanwhile, `abandon` still keeps the text
        self._partial_event(message_id, text, status)

    def _partial_message(self, text: str, status: str) -> dict[str, Any]:
        return self._row(role="assistant", content=text, status=status, backend=self.backend)

    def _partial_event(self, message_id: int | None, text: str, status: str) -> None:
        self.emit(
            run_events.MessageCompleted(
                message_id=message_id, content=text, status=status, tool_calls=[], usage=None
            )
        )

    def _pause(self) -> None:
        """Stop before the calls that wait for approval: the run's counts so far, its status
        `awaiting_approval`, and the requests are stored together; its stream goes on when it resumes
        (no `run.finished`: `announced` from the start)."""
        fields = {
            "status": "awaiting_approval",
            "paused_at": datetime.now(UTC),
            "ttft_ms": round(self.ttft_ms, 2) if self.ttft_ms is not None else None,
            "total_ms": round(self._elapsed_ms(), 2),
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
        }
        self.outcome = RunOutcome("awaiting_approval", fields, {}, announced=True)

    def _conclude(self, status: str, error_code: str | None = None, error_message: str | None = None) -> None:
        total_ms = round(self._elapsed_ms(), 2)
        ttft_ms = round(self.ttft_ms, 2) if self.ttft_ms is not None else None
        fields = {
            "status": status,
            "error_code": error_code,
            "error_message": error_message,
            "ttft_ms": ttft_ms,
            "total_ms": total_ms,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "prompt_tokens": self.usage.prompt_tokens if self.usage else None,
            "completion_tokens": self.usage.completion_tokens if self.usage else None,
            "finished_at": datetime.now(UTC),
        }
        finished = run_events.RunFinished(
            status=status,
            timings=run_events.Timings(
                ttft_ms=ttft_ms,
                total_ms=total_ms,
                llm_calls=self.llm_calls,
                tool_calls=self.tool_calls,
                approval_wait_ms=self.approval_wait_ms,
            ),
            usage=_usage(self.usage),
        )
        self.outcome = RunOutcome(status, fields, finished.to_data())
        m = self.metrics
        m.runs.labels(self.backend, status).inc()
        m.run_duration.labels(self.backend).observe(total_ms / 1000)
        m.run_llm_calls.labels(self.backend).observe(self.llm_calls)
        m.run_tool_calls.labels(self.backend).observe(self.tool_calls)
        if ttft_ms is not None:
            m.run_ttft.labels(self.backend).observe(ttft_ms / 1000)

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def _usage(usage: Usage | None) -> run_events.Usage | None:
    if usage is None:
        return None
    return run_events.Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
