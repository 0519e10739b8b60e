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


class RunStarted(_Body):
    run_id: str
    conversation_id: str
    user_message_id: int
    backend: str
    events_url: str


RunStatus = Literal["running", "completed", "cancelled", "failed", "interrupted"]


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


class ErrorDetail(_Body):
    code: str = "error"
    message: str = ""


class ErrorBody(_Body):
    error: ErrorDetail
