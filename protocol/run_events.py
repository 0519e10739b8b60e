"""A run's events: what `GET /api/runs/{id}/events` streams while the agent answers, one class per
event type (README.md, "Run events").

On the wire each event is one Server-Sent Event: `id:` its position in the run (1, 2, ...: a client
resumes after it with `Last-Event-ID`), `event:` its type, `data:` its fields as one compact JSON
object with non-ASCII text as UTF-8 (`RunEvent.data_json`). A run's last event is `run.finished`
(`TERMINAL_EVENT`).

Writers build an event and store `to_data()`, its JSON object, under its `TYPE`:

    event = MessageDelta(text="Hello")
    log.append(event.TYPE, event.to_data())

Readers turn what arrived into its class with `RunEvent.parsed()`: None for a type this version does
not know (a newer server's), which a reader skips, and `InvalidEvent` for data that does not fit.
Every field has the default a reader assumes when a server leaves it out; writers set them all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from protocol.sse import SseEvent

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""The one encoding of an event's data, made once (`json.dumps` with options builds an encoder per
call). Stored events are re-encoded with it when replayed: a replay is byte for byte the live stream."""


class InvalidEvent(ValueError):
    """A known event type whose data does not fit its class."""


# parts of events


@dataclass(slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_data(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(slots=True, kw_only=True)
class Source:
    """A search result a tool cited."""

    title: str = ""
    url: str
    snippet: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"title": self.title, "url": self.url, "snippet": self.snippet}


@dataclass(slots=True, kw_only=True)
class ToolAttachment:
    """Something a tool returned besides text (an image, audio, a file), summarised: its content is
    not carried (clients show what it is, and load nothing)."""

    kind: str = ""
    """`image`, `audio`, `resource` (embedded) or `resource_link`."""
    mime_type: str = ""
    size: int | None = None
    """Bytes, when known."""
    name: str = ""
    """The resource's URI or name, when it has one (untrusted: the tool's)."""

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "mime_type": self.mime_type, "size": self.size, "name": self.name}


@dataclass(slots=True, kw_only=True)
class ToolCall:
    """A tool call the model asked for; `arguments` is its JSON text as the model wrote it."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(slots=True, kw_only=True)
class Timings:
    ttft_ms: float | None = None
    total_ms: float | None = None
    llm_calls: int = 0
    tool_calls: int = 0
    approval_wait_ms: float | None = None
    """Of `total_ms`, the time the run waited for the user to approve tool calls (None: it never did)."""

    def to_data(self) -> dict[str, Any]:
        return {
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "approval_wait_ms": self.approval_wait_ms,
        }


# the events


@dataclass(slots=True, kw_only=True)
class EventData:
    """The data of one event; its subclasses are the event types.

    `to_data` is written out for each: events are written thousands of times a second, and
    `dataclasses.asdict` costs several times what the dict does (tests check they agree)."""

    TYPE: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The event's JSON object, its fields in the documented order."""
        raise NotImplementedError


@dataclass(slots=True, kw_only=True)
class RunStarted(EventData):
    TYPE: ClassVar[str] = "run.started"
    run_id: str = ""
    conversation_id: str = ""
    backend: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "conversation_id": self.conversation_id, "backend": self.backend}


@dataclass(slots=True, kw_only=True)
class MessageDelta(EventData):
    """The next piece of the answer."""

    TYPE: ClassVar[str] = "message.delta"
    text: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(slots=True, kw_only=True)
class ToolStarted(EventData):
    TYPE: ClassVar[str] = "tool.started"
    call_id: str = ""
    name: str = ""
    arguments: dict[str, Any] | str | None = None
    """The parsed arguments, or their JSON text as the model wrote it when it is not valid JSON."""
    server: str = ""
    """`builtin`, or the MCP server the tool belongs to ("" from servers before MCP tools)."""

    def to_data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "server": self.server,
        }


@dataclass(slots=True, kw_only=True)
class ToolFinished(EventData):
    TYPE: ClassVar[str] = "tool.finished"
    call_id: str = ""
    name: str = ""
    output: str = ""
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    duration_ms: float | None = None
    server: str = ""
    """`builtin`, or the MCP server the tool belongs to."""
    attachments: list[ToolAttachment] = field(default_factory=list)
    """What the tool returned besides text (MCP images, audio, resources), summarised."""

    def to_data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "output": self.output,
            "sources": [s.to_data() for s in self.sources],
            "error": self.error,
            "duration_ms": self.duration_ms,
            "server": self.server,
            "attachments": [a.to_data() for a in self.attachments],
        }


@dataclass(slots=True, kw_only=True)
class ToolApprovalRequired(EventData):
    """A call of a tool configured `approval: ask`: the run pauses before it (status
    `awaiting_approval`) until the user decides, or until `expires_at` (ISO 8601, UTC) denies it."""

    TYPE: ClassVar[str] = "tool.approval_required"
    call_id: str = ""
    name: str = ""
    server: str = ""
    """`builtin`, or the MCP server's name."""
    arguments: dict[str, Any] | str | None = None
    """The parsed arguments, or their JSON text as the model wrote it when it is not valid JSON."""
    expires_at: str = ""

    def to_data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "server": self.server,
            "arguments": self.arguments,
            "expires_at": self.expires_at,
        }


@dataclass(slots=True, kw_only=True)
class ToolApprovalResolved(EventData):
    """What became of a call that waited: approved runs next, declined is told to the model."""

    TYPE: ClassVar[str] = "tool.approval_resolved"
    call_id: str = ""
    approved: bool = False
    by: str = ""
    """The name of the user who decided, or `timeout`."""
    reason: str | None = None
    """The user's reason, `timed out`, or `cancelled` (the run was stopped while it waited)."""
    waited_ms: float | None = None
    """How long the call waited for its decision."""

    def to_data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "approved": self.approved,
            "by": self.by,
            "reason": self.reason,
            "waited_ms": self.waited_ms,
        }


@dataclass(slots=True, kw_only=True)
class MessageCompleted(EventData):
    """One assistant message, whole: what the deltas before it added up to (they may have been cut
    short). `message_id` is None when the database was down then."""

    TYPE: ClassVar[str] = "message.completed"
    message_id: int | None = None
    content: str = ""
    status: str = "complete"
    """`complete`, `cancelled`, `error` or `interrupted`."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "content": self.content,
            "status": self.status,
            "tool_calls": [c.to_data() for c in self.tool_calls],
            "usage": self.usage.to_data() if self.usage else None,
        }


@dataclass(slots=True, kw_only=True)
class BackendStarting(EventData):
    """A backend that scales to zero is silent, a replica is probably starting: the run waits for it
    up to `timeout_s`."""

    TYPE: ClassVar[str] = "backend.starting"
    backend: str = ""
    timeout_s: float = 0.0

    def to_data(self) -> dict[str, Any]:
        return {"backend": self.backend, "timeout_s": self.timeout_s}


@dataclass(slots=True, kw_only=True)
class BackendReady(EventData):
    TYPE: ClassVar[str] = "backend.ready"
    backend: str = ""
    waited_ms: float = 0.0

    def to_data(self) -> dict[str, Any]:
        return {"backend": self.backend, "waited_ms": self.waited_ms}


@dataclass(slots=True, kw_only=True)
class RunError(EventData):
    """Why the run failed (`code`: see README.md); `run.finished` follows."""

    TYPE: ClassVar[str] = "run.error"
    code: str = ""
    message: str = ""

    def to_data(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(slots=True, kw_only=True)
class RunFinished(EventData):
    TYPE: ClassVar[str] = "run.finished"
    status: str = ""
    """`completed`, `cancelled`, `failed` or `interrupted`."""
    timings: Timings = field(default_factory=Timings)
    usage: Usage | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "timings": self.timings.to_data(),
            "usage": self.usage.to_data() if self.usage else None,
        }


TERMINAL_EVENT = RunFinished.TYPE
"""The type of a run's last event."""

EVENT_TYPES: Mapping[str, type[EventData]] = {
    cls.TYPE: cls
    for cls in (
        RunStarted,
        MessageDelta,
        ToolStarted,
        ToolFinished,
        ToolApprovalRequired,
        ToolApprovalResolved,
        MessageCompleted,
        BackendStarting,
        BackendReady,
        RunError,
        RunFinished,
    )
}


_adapters: dict[str, TypeAdapter[EventData]] = {}
"""Built on first use: only readers need them, and each takes milliseconds to build."""


def parse_event(type_: str, data: Mapping[str, Any] | str) -> EventData | None:
    """The event of type `type_` with `data`, its JSON object or the JSON text as it arrived (read in
    one step, faster than `json.loads` first). None if the type is unknown. Unknown fields are
    ignored, missing ones take their defaults; raises `InvalidEvent` if the text is not JSON or a
    field has the wrong type."""
    adapter = _adapters.get(type_)
    if adapter is None:
        cls = EVENT_TYPES.get(type_)
        if cls is None:
            return None
        adapter = _adapters[type_] = TypeAdapter(cls)
    try:
        if isinstance(data, str):
            return adapter.validate_json(data)
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidEvent(f"a {type_} event that does not fit ({where or 'data'}: {first['msg']})") from exc


@dataclass(slots=True)
class RunEvent:
    """One event of a run's stream as it travels and is stored: its position, type and JSON object.

    Shared by every subscriber of the run: nothing changes one once made (not frozen only because
    that makes each cost three times as much to build)."""

    id: int
    type: str
    data: dict[str, Any]

    def data_json(self) -> str:
        return _encode(self.data)

    def parsed(self) -> EventData | None:
        """The event as its class (see `parse_event`)."""
        return parse_event(self.type, self.data)

    @classmethod
    def from_sse(cls, message: SseEvent) -> RunEvent | None:
        """The run event an SSE message carries; None without a numeric id (then it is not one).

        Data that is not a JSON object is read as an empty one: the event's type and position still
        count (a `run.finished` still ends the stream)."""
        if message.id is None or not (message.id.isascii() and message.id.isdigit()):
            return None
        try:
            data = json.loads(message.data)
        except ValueError:
            data = None
        return cls(int(message.id), message.event, data if isinstance(data, dict) else {})
