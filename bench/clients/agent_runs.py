"""chatstack's agent API, as a user drives it: requests to send, and a run's timeline from its events.

The timeline is what a client can see: when each event arrived. Time in the model is the sum of each
model call's window (from the run's start, or from the tool results it answers, to its
`message.completed`); time waiting for the user is the union of `tool.approval_required` →
`tool.approval_resolved` windows; time in tools is the union of `tool.started` → `tool.finished`
windows outside those waits, in all and per tool server (`builtin` or the MCP server's name); the rest
of the run, from posting the message to `run.finished`, is chatstack's own time (plus the network).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.clients.exchange import Exchange, Request
from bench.clients.sse import iter_events
from protocol.run_events import (
    InvalidEvent,
    MessageCompleted,
    MessageDelta,
    RunError,
    RunFinished,
    RunStarted,
    ToolApprovalRequired,
    ToolApprovalResolved,
    ToolFinished,
    ToolStarted,
    parse_event,
)

BUILTIN_SERVER = "builtin"

_JSON = (("content-type", "application/json"),)


def _with_key(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return _JSON + ((("authorization", f"Bearer {api_key}"),) if api_key else ())


def conversation_request(backend: str | None, api_key: str | None = None) -> Request:
    body = {"title": "bench"} | ({"backend": backend} if backend else {})
    return Request("POST", "/api/conversations", json.dumps(body).encode(), _with_key(api_key))


def message_request(
    conversation_id: str, content: str, backend: str | None, api_key: str | None = None
) -> Request:
    body = {"content": content} | ({"backend": backend} if backend else {})
    return Request(
        "POST",
        f"/api/conversations/{conversation_id}/messages",
        json.dumps(body).encode(),
        _with_key(api_key),
    )


def events_request(events_url: str, api_key: str | None = None) -> Request:
    """GET the run's event stream (`events_url` may be absolute, as chatstack returns it)."""
    parts = urlsplit(events_url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = (("accept", "text/event-stream"),) + (
        (("authorization", f"Bearer {api_key}"),) if api_key else ()
    )
    return Request("GET", path, b"", headers)


def delete_request(conversation_id: str, api_key: str | None = None) -> Request:
    return Request("DELETE", f"/api/conversations/{conversation_id}", b"", _with_key(api_key)[1:])


def json_body(exchange: Exchange) -> dict[str, Any]:
    """The JSON object of a 2xx response; raises ValueError naming the status and body otherwise."""
    if not exchange.ok:
        raise ValueError(exchange.error or f"HTTP {exchange.status}: {exchange.body()[:300]!r}")
    data = json.loads(exchange.body())
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


@dataclass(slots=True)
class RunTimeline:
    first_event_at: float = 0.0
    first_token_at: float = 0.0
    first_answer_token_at: float = 0.0
    finished_at: float = 0.0
    llm_s: float = 0.0
    tools_s: float = 0.0
    tools_by_server: dict[str, float] = field(default_factory=dict)
    """Of `tools_s`, the seconds in each tool server's calls (parallel calls of one server count once)."""
    tool_calls_by_server: dict[str, int] = field(default_factory=dict)
    approval_wait_s: float = 0.0
    approvals: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    tool_names: list[str] = field(default_factory=list)
    failed_tool_calls: int = 0
    answer: str = ""
    status: str = ""
    error: str | None = None
    error_source: str | None = None
    """`server` or `transport` for a failure, as `StreamOutcome.error_source` defines them."""
    prompt_tokens: int | None = None
    output_tokens: int = 0
    server_timings: dict[str, Any] = field(default_factory=dict)


def read_run_events(exchange: Exchange) -> RunTimeline:
    """Everything a run's event stream says, stamped with arrival times."""
    timeline = RunTimeline()
    if not exchange.ok:
        timeline.error = exchange.error or f"HTTP {exchange.status} on the event stream"
        timeline.error_source = "transport" if exchange.error else "server"
        return timeline
    call_start = 0.0
    tool_windows: dict[str, list[tuple[float, float]]] = {}
    open_tools: dict[str, tuple[float, str]] = {}
    waits: list[tuple[float, float]] = []
    open_waits: dict[str, float] = {}
    after_tools = False
    for sse in iter_events(exchange.chunks):
        try:
            event = parse_event(sse.event, sse.data or "{}")
        except InvalidEvent as exc:
            timeline.error = f"{exc}: {sse.data[:120]!r}"
            continue
        at = sse.at
        if not timeline.first_event_at:
            timeline.first_event_at = at
        if isinstance(event, RunStarted):
            call_start = at
        elif isinstance(event, MessageDelta):
            timeline.first_token_at = timeline.first_token_at or at
            if not timeline.first_answer_token_at or after_tools:
                timeline.first_answer_token_at = at
                after_tools = False
            timeline.answer += event.text
        elif isinstance(event, MessageCompleted):
            timeline.llm_calls += 1
            if call_start:
                timeline.llm_s += at - call_start
            call_start = 0.0
            timeline.answer = event.content or timeline.answer
        elif isinstance(event, ToolStarted):
            timeline.tool_calls += 1
            timeline.tool_names.append(event.name)
            server = _server(event, sse.data)
            open_tools[event.call_id] = (at, server)
            timeline.tool_calls_by_server[server] = timeline.tool_calls_by_server.get(server, 0) + 1
            if event.arguments is None:
                timeline.failed_tool_calls += 1
        elif isinstance(event, ToolFinished):
            started, server = open_tools.pop(event.call_id, (at, _server(event, sse.data)))
            tool_windows.setdefault(server, []).append((started, at))
            if event.error:
                timeline.failed_tool_calls += 1
            if not open_tools and not open_waits:
                call_start, after_tools = at, True
        elif isinstance(event, ToolApprovalRequired):
            timeline.approvals += 1
            open_waits[event.call_id] = at
        elif isinstance(event, ToolApprovalResolved):
            waits.append((open_waits.pop(event.call_id, at), at))
            if not open_tools and not open_waits:
                # A declined call runs no tool: the model is asked again from here.
                call_start, after_tools = at, True
        elif isinstance(event, RunError):
            timeline.error = f"run.error {event.code}: {event.message}"
        elif isinstance(event, RunFinished):
            timeline.finished_at = at
            timeline.status = event.status
            timeline.server_timings = event.timings.to_data()
            timeline.prompt_tokens = event.usage.prompt_tokens if event.usage else None
            timeline.output_tokens = event.usage.completion_tokens if event.usage else 0
    # A wait the stream ended during (the run was stopped while it waited) lasted to the end.
    waits += [(started, timeline.finished_at or started) for started in open_waits.values()]
    timeline.approval_wait_s = _union(waits)
    every_tool = [w for windows in tool_windows.values() for w in windows]
    timeline.tools_s = _outside(every_tool, waits)
    timeline.tools_by_server = {server: _outside(windows, waits) for server, windows in tool_windows.items()}
    if timeline.error is None:
        if not timeline.finished_at:
            timeline.error = "the event stream ended without run.finished"
        elif timeline.status != "completed":
            timeline.error = f"run {timeline.status}"
        elif not timeline.answer.strip():
            timeline.error = "empty answer"
    if timeline.error is not None:  # the stream was read to its end: the run itself failed
        timeline.error_source = "server"
    return timeline


def _server(event: ToolStarted | ToolFinished, raw: str) -> str:
    """The tool's server as the event names it; `builtin` for a server that names none (one older
    than MCP tools)."""
    server = getattr(event, "server", None)
    if server is None:  # a protocol module without the field yet: read it from the event's JSON
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        server = data.get("server") if isinstance(data, dict) else None
    return server if isinstance(server, str) and server else BUILTIN_SERVER


def _outside(windows: list[tuple[float, float]], waits: list[tuple[float, float]]) -> float:
    """Time covered by `windows` but not by `waits`: a tool's window may hold its approval wait (when
    its `tool.started` comes first), and that time is the user's, not the tool's."""
    if not waits:
        return _union(windows)
    return max(0.0, _union(windows + waits) - _union(waits))


def _union(windows: list[tuple[float, float]]) -> float:
    """Total time covered by possibly overlapping windows (parallel tool calls count once)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(windows):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total
