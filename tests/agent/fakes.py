"""A scripted chat model and simple tools for unit tests of the agent's logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agent.events import AgentEvent, Usage
from agent.model import ModelChunk, ToolCallDelta
from tools.base import ToolOutput


def text(*pieces: str) -> list[ModelChunk]:
    return [ModelChunk(text=p) for p in pieces] + [ModelChunk(usage=Usage(10, len(pieces)))]


def native_call(name: str, arguments: str, call_id: str = "call_1", index: int = 0) -> list[ModelChunk]:
    half = len(arguments) // 2
    return [
        ModelChunk(tool_calls=[ToolCallDelta(index, call_id, name, arguments[:half])]),
        ModelChunk(tool_calls=[ToolCallDelta(index, None, None, arguments[half:])]),
        ModelChunk(usage=Usage(10, 5)),
    ]


@dataclass
class ScriptedModel:
    """Replies with the next scripted chunk list on each call and records what it was sent."""

    replies: list[list[ModelChunk]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    name: str = "fake"

    async def stream(
        self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None, max_tokens: int | None
    ) -> AsyncIterator[ModelChunk]:
        self.requests.append({"messages": messages, "tools": tools, "max_tokens": max_tokens})
        if not self.replies:
            raise AssertionError("the model was called more often than scripted")
        for chunk in self.replies.pop(0):
            await asyncio.sleep(0)
            yield chunk


@dataclass
class EchoTool:
    name: str = "echo"
    description: str = "Echo the text back."
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }
    )
    delay_s: float = 0.0
    fail: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def run(self, arguments: dict[str, Any]) -> ToolOutput:
        self.calls.append(arguments)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("tool bug")
        return ToolOutput(content=f"echo: {arguments.get('text', '')}")


@dataclass
class Recorder:
    events: list[AgentEvent] = field(default_factory=list)

    async def __call__(self, event: AgentEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
