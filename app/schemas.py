"""Request and response bodies of the chatstack API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_STRICT = ConfigDict(extra="forbid")


def _no_control_chars(value: str) -> str:
    # Tabs and newlines are text; other C0 controls and NUL only break terminals, logs and PostgreSQL.
    if any((ord(c) < 32 and c not in "\t\n\r") or c == "\x7f" for c in value):
        raise ValueError("must not contain control characters")
    return value


class ConversationCreate(BaseModel):
    model_config = _STRICT

    title: str | None = Field(default=None, min_length=1, max_length=200)
    backend: str | None = Field(default=None, min_length=1, max_length=100)

    _check_title = field_validator("title")(lambda v: v if v is None else _no_control_chars(v))


class ConversationUpdate(BaseModel):
    model_config = _STRICT

    title: str | None = Field(default=None, min_length=1, max_length=200)
    backend: str | None = Field(default=None, min_length=1, max_length=100)

    _check_title = field_validator("title")(lambda v: v if v is None else _no_control_chars(v))


class MessageCreate(BaseModel):
    model_config = _STRICT

    content: str = Field(min_length=1)
    backend: str | None = Field(default=None, min_length=1, max_length=100)

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


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    conversation_id: str
    status: Literal["running", "completed", "cancelled", "failed", "interrupted"]
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


def message_out(row: Any) -> MessageOut:
    """Build the API view of a stored message row."""
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
    )
