"""Chat messages as the agent keeps them: OpenAI-format dicts, the canonical form for every backend."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

ChatMessage = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call as the model asked for it. `arguments` is the raw JSON text, possibly malformed."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_openai(cls, raw: dict[str, Any]) -> ToolCall:
        function = raw.get("function") or {}
        return cls(
            id=str(raw.get("id") or new_call_id()),
            name=str(function.get("name") or ""),
            arguments=str(function.get("arguments") or ""),
        )

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments object; raises ValueError when they are not a JSON object."""
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def assistant_message(content: str, tool_calls: list[ToolCall]) -> ChatMessage:
    message: ChatMessage = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [c.to_openai() for c in tool_calls]
    return message


def tool_calls_of(message: ChatMessage) -> list[ToolCall]:
    return [ToolCall.from_openai(c) for c in message.get("tool_calls") or []]


def tool_message(call: ToolCall, content: str) -> ChatMessage:
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
