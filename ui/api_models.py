"""The chatstack API's bodies as the UI reads them.

These mirror `app/schemas.py` without importing it: the UI is a client of the HTTP API and must keep
working against any server that speaks it. Unknown fields are ignored so the API can grow. A run's
events, and the sources a tool cites, are the wire protocol's own (`protocol.run_events`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from protocol.run_events import RunEvent as RunEvent
from protocol.run_events import Source


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


BackendHealth = Literal["unknown", "up", "down", "starting"]


class Backend(_Body):
    name: str
    model: str = ""
    description: str = ""
    tool_mode: Literal["native", "prompted", "none"] = "none"
    supports_tools: bool = False
    role: Literal["general", "tools", "throughput"] = "general"
    context_length: int | None = None
    default: bool = False
    health: BackendHealth = "unknown"
    health_checked_at: datetime | None = None
    health_latency_ms: float | None = None
    health_error: str | None = None


AUTO_BACKEND = "auto"
"""The backend choice that routes between the `tools` and `throughput` backends (see AutoRouting)."""


class AutoRouting(_Body):
    """The `auto` choice: tool steps on the `tools` backend, answers after tools on `throughput`."""

    tools: str
    throughput: str


class BackendList(_Body):
    items: list[Backend]
    default: str
    auto: AutoRouting | None = None
    """None when the backends file does not name both roles (then `auto` is not a choice)."""


class Conversation(_Body):
    id: str
    title: str
    backend: str | None = None
    created_at: datetime
    updated_at: datetime
    tools: list[str] | None = None
    """The tools enabled in the conversation; None: every tool whose approval is not `deny`."""
    active_leaf_id: int | None = None
    """The last message of the branch shown (`PATCH` with another message's id switches branch)."""


class ConversationList(_Body):
    items: list[Conversation]
    total: int


class ToolCall(_Body):
    id: str
    name: str
    arguments: str
    """JSON text as the model wrote it (possibly malformed)."""


MessageStatus = Literal["complete", "cancelled", "error", "interrupted"]


class Message(_Body):
    id: int
    role: Literal["user", "assistant", "tool", "system"]
    content: str
    status: MessageStatus = "complete"
    run_id: str | None = None
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None
    name: str | None = None
    sources: list[Source] = []
    backend: str | None = None
    """For an answer: the backend that wrote it (with `auto`, not the conversation's choice)."""
    duration_ms: float | None = None
    """For a tool result: how long the tool took."""
    parent_id: int | None = None
    """The message this one follows (None: a first message)."""
    siblings: list[int] = []
    """The alternatives at this point (edits of a question, regenerated answers), oldest first, this
    message included ([] from a server without branches)."""
    attachments: list[AttachmentRef] = []
    """The files this message is about."""


class RunStarted(_Body):
    run_id: str
    conversation_id: str
    user_message_id: int
    backend: str
    events_url: str


RunStatus = Literal["running", "awaiting_approval", "completed", "cancelled", "failed", "interrupted"]
LIVE_RUN_STATUSES = frozenset({"running", "awaiting_approval"})
"""A run in one of these is not over: `awaiting_approval` is paused until the user decides a call."""


class Run(_Body):
    id: str
    conversation_id: str
    status: RunStatus
    backend: str
    error_code: str | None = None
    error_message: str | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    llm_calls: int = 0
    tool_calls: int = 0


class ConversationDetail(Conversation):
    messages: list[Message]
    runs: list[Run] = []
    """Every run of the conversation, oldest first, with its outcome and timings."""
    active_run_id: str | None = None


class BackendUsage(_Body):
    backend: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Usage(_Body):
    """`GET /api/usage`: the caller's tokens this budget period, against their budget."""

    period: str
    """`day`, `week`, `month` or `<N>h`."""
    period_start: datetime
    resets_at: datetime
    budget: int | None = None
    """Tokens per period; None is unlimited."""
    used: int = 0
    remaining: int | None = None
    by_backend: list[BackendUsage] = []


Approval = Literal["auto", "ask", "deny"]


class ToolInfo(_Body):
    """One tool of `GET /api/tools`. Its description is the server's own text: untrusted."""

    name: str
    server: str = "builtin"
    description: str = ""
    approval: Approval = "auto"
    status: Literal["available", "unavailable"] = "available"
    reason: str | None = None


class ToolList(_Body):
    items: list[ToolInfo]


class ApprovalResult(_Body):
    """`POST /api/runs/{id}/approvals`: the decision taken, and the run's status after it."""

    run_id: str
    call_id: str
    approved: bool
    status: RunStatus


class AttachmentRef(_Body):
    """A file attached to a conversation, as a message shows it."""

    id: str
    name: str
    media_type: str = ""
    bytes: int = 0


class Attachment(AttachmentRef):
    """`POST/GET /api/conversations/{id}/attachments`: a stored file."""

    tokens: int = 0
    pages: int | None = None


class AttachmentList(_Body):
    items: list[Attachment]


class SearchHit(_Body):
    """One message of `GET /api/search`. `snippet` is plain text (the message's own: untrusted);
    `highlights` are the matched words in it, [start, end) in code points."""

    conversation_id: str
    conversation_title: str = ""
    message_id: int
    role: str = ""
    snippet: str = ""
    highlights: list[tuple[int, int]] = []
    created_at: datetime | None = None


class SearchResults(_Body):
    items: list[SearchHit]
    total: int = 0
    has_more: bool = False


class ErrorDetail(_Body):
    code: str = "error"
    message: str = ""


class ErrorBody(_Body):
    error: ErrorDetail
