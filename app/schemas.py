"""Request and response bodies of the chatstack API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STRICT = ConfigDict(extra="forbid")
MAX_MESSAGE_ID = 2**63 - 1
"""Message ids are 64-bit in both databases: a larger one is a 422, not a database error."""


def _no_control_chars(value: str) -> str:
    # Tabs and newlines are text; other C0 controls and NUL only break terminals, logs and PostgreSQL.
    if any((ord(c) < 32 and c not in "\t\n\r") or c == "\x7f" for c in value):
        raise ValueError("must not contain control characters")
    return value


ToolName = Annotated[str, Field(min_length=1, max_length=64)]
ToolSelection = Annotated[list[ToolName] | None, Field(max_length=512)]
"""The tools enabled in a conversation, by the names `GET /api/tools` gives; null: every tool whose
approval is not `deny`."""


class ConversationCreate(BaseModel):
    model_config = _STRICT

    title: str | None = Field(default=None, min_length=1, max_length=200)
    backend: str | None = Field(default=None, min_length=1, max_length=100)
    tools: ToolSelection = None

    _check_title = field_validator("title")(lambda v: v if v is None else _no_control_chars(v))


class ConversationUpdate(BaseModel):
    model_config = _STRICT

    title: str | None = Field(default=None, min_length=1, max_length=200)
    backend: str | None = Field(default=None, min_length=1, max_length=100)
    active_leaf_id: int | None = Field(default=None, ge=1, le=MAX_MESSAGE_ID)
    """Switch branch: show the path through this message, down to the newest message below it."""
    tools: ToolSelection = None
    """Sent as null: every tool again; absent: unchanged."""

    _check_title = field_validator("title")(lambda v: v if v is None else _no_control_chars(v))


AttachmentId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class AttachmentRef(BaseModel):
    """An attachment as a message shows it."""

    id: str
    name: str
    media_type: str
    bytes: int


class AttachmentOut(AttachmentRef):
    tokens: int
    """The size of its text for a model (estimated)."""
    pages: int | None = None
    created_at: datetime


class AttachmentList(BaseModel):
    items: list[AttachmentOut]


class MessageCreate(BaseModel):
    model_config = _STRICT

    content: str = Field(min_length=1)
    backend: str | None = Field(default=None, min_length=1, max_length=100)
    parent_id: int | None = Field(default=None, ge=1, le=MAX_MESSAGE_ID)
    """The message this one follows. Absent: the active leaf; null: a new first message. Any other
    parent than the active leaf starts a new branch (the parent of an earlier question: an edit)."""
    attachments: list[AttachmentId] = Field(default_factory=list, max_length=20)
    """Ids of the conversation's attachments (`POST .../attachments`) this message is about."""

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return _no_control_chars(value)


class Conversation(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    backend: str | None
    created_at: datetime
    updated_at: datetime
    active_leaf_id: int | None = None
    """The last message of the branch shown (see `PATCH` to switch)."""
    tools: list[str] | None = None
    """The tools enabled in this conversation; null: every tool whose approval is not `deny`."""


class ConversationList(BaseModel):
    items: list[Conversation]
    total: int


class ToolCallOut(BaseModel):
    id: str
    name: str
    arguments: str


class SourceOut(BaseModel):
    title: str
    url: str
    snippet: str = ""


class MessageOut(BaseModel):
    id: int
    role: Literal["user", "assistant", "tool", "system"]
    content: str
    status: Literal["complete", "cancelled", "error", "interrupted"]
    run_id: str | None
    tool_calls: list[ToolCallOut] = []
    tool_call_id: str | None = None
    name: str | None = None
    sources: list[SourceOut] = []
    backend: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: float | None = None
    created_at: datetime
    parent_id: int | None = None
    """The message this one follows (None: a first message)."""
    siblings: list[int] = []
    """The alternatives at this point (edits of a question, regenerated answers), oldest first, this
    message included: "2 / 3" is its position in this list."""
    attachments: list[AttachmentRef] = []
    """The files this message references, in the order given."""


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    status: Literal["running", "awaiting_approval", "completed", "cancelled", "failed", "interrupted"]
    """`awaiting_approval`: paused before tool calls until the user decides (POST .../approvals)."""
    backend: str
    error_code: str | None
    error_message: str | None
    created_at: datetime
    finished_at: datetime | None
    ttft_ms: float | None
    total_ms: float | None
    llm_calls: int
    tool_calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    approval_wait_ms: float | None = None
    """Of `total_ms`, the time spent waiting for tool approvals (None: the run never waited)."""


class ApprovalDecision(BaseModel):
    """The user's decision on a tool call that waits (`tool.approval_required`)."""

    model_config = _STRICT

    call_id: str = Field(min_length=1, max_length=128)
    approve: bool
    reason: str | None = Field(default=None, max_length=1000)

    _check_reason = field_validator("reason")(lambda v: v if v is None else _no_control_chars(v))


class ApprovalOut(BaseModel):
    run_id: str
    call_id: str
    approved: bool
    status: Literal["running", "awaiting_approval", "completed", "cancelled", "failed", "interrupted"]
    """The run's status after the decision: `running` once its last waiting call is decided."""


class ConversationDetail(Conversation):
    messages: list[MessageOut]
    runs: list[RunOut]
    """Every run of the conversation, oldest first, with its status and timings."""
    active_run_id: str | None
    """The run still producing an answer, to resume its event stream after a reload."""


class Regenerate(BaseModel):
    model_config = _STRICT

    backend: str | None = Field(default=None, min_length=1, max_length=100)


class RunStarted(BaseModel):
    run_id: str
    conversation_id: str
    user_message_id: int
    backend: str
    events_url: str


class BackendOut(BaseModel):
    name: str
    kind: Literal["openai", "embedded"]
    model: str
    description: str
    tool_mode: Literal["native", "prompted", "none"]
    supports_tools: bool
    role: Literal["general", "tools", "throughput"]
    context_length: int
    default: bool
    health: Literal["unknown", "up", "down", "starting"]
    health_checked_at: datetime | None
    health_latency_ms: float | None
    health_error: str | None


class AutoRouting(BaseModel):
    """`auto`: tool steps go to `tools`, the answer after a tool round to `throughput`."""

    tools: str
    throughput: str


class BackendList(BaseModel):
    items: list[BackendOut]
    default: str
    auto: AutoRouting | None


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str


class ErrorBody(BaseModel):
    error: ErrorDetail


ExportFormat = Literal["json", "markdown"]


def message_out(row: Any, siblings: list[int] | None = None) -> MessageOut:
    """Build the API view of a stored message row (with its alternatives, from the message tree)."""
    return MessageOut(
        id=row.id,
        role=row.role,
        content=row.content,
        status=row.status,
        run_id=row.run_id,
        tool_calls=[
            ToolCallOut(
                id=c.get("id", ""),
                name=(c.get("function") or {}).get("name", ""),
                arguments=(c.get("function") or {}).get("arguments", ""),
            )
            for c in row.tool_calls or []
        ],
        tool_call_id=row.tool_call_id,
        name=row.name,
        sources=[SourceOut(**s) for s in row.sources or []],
        backend=row.backend,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        duration_ms=row.duration_ms,
        created_at=row.created_at,
        parent_id=row.parent_id,
        siblings=siblings if siblings is not None else [row.id],
    )
