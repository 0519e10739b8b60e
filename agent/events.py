"""What the agent reports while it works. The app turns these into stored messages and SSE events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.messages import ToolCall
from tools.base import Attachment, Source


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text, as soon as the model produced it."""

    text: str


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    """One model call finished: its whole text and the tool calls it asked for."""

    content: str
    tool_calls: list[ToolCall]
    usage: Usage | None
    step: int
    backend: str = ""
    """The backend that produced this turn."""


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call: ToolCall
    arguments: dict[str, Any] | None
    """Parsed arguments; None when the model's JSON was malformed."""


@dataclass(frozen=True, slots=True)
class ToolFinished:
    call: ToolCall
    content: str
    """What the model reads."""
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0
    attachments: list[Attachment] = field(default_factory=list)
    """What the tool returned besides text (`ToolOutput.attachments`)."""


@dataclass(frozen=True, slots=True)
class BackendStarting:
    """A backend that scales to zero has not answered yet: a replica is probably starting."""

    backend: str
    timeout_s: float
    """How long the run waits for it in all."""


@dataclass(frozen=True, slots=True)
class BackendReady:
    """The backend announced by `BackendStarting` sent its first token."""

    backend: str
    waited_ms: float


@dataclass(frozen=True, slots=True)
class ApprovalRequired:
    """A call of an `ask` tool: the run pauses before it until the user decides (agent/approval.py)."""

    call: ToolCall
    arguments: dict[str, Any] | None


AgentEvent = (
    TextDelta | AssistantTurn | ToolStarted | ToolFinished | BackendStarting | BackendReady | ApprovalRequired
)
EventSink = Callable[[AgentEvent], Awaitable[None]]
