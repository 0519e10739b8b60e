"""Tool calling for backends without a native tool parser: tools described in the prompt, calls parsed
from the model's text.

Accepted call forms, because small and non-tool-tuned models wander between them:
`<tool_call>{...}</tool_call>` blocks (Hermes style), a fenced ```json block, or a bare JSON object,
each holding `{"name": ..., "arguments": {...}}` (`parameters` is accepted for `arguments`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agent import prompts
from agent.messages import ToolCall, new_call_id
from tools.base import Tool

_OPEN = "<tool_call>"
_CLOSE = "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)\s*```", re.DOTALL)


def tools_prompt(tools: list[Tool]) -> str:
    entries = "\n".join(
        prompts.PROMPTED_TOOL_ENTRY.format(
            name=t.name, description=t.description, schema=json.dumps(t.parameters, separators=(",", ":"))
        )
        for t in tools
    )
    return prompts.PROMPTED_TOOLS_INTRO.format(tool_list=entries)


@dataclass(frozen=True, slots=True)
class ParsedText:
    """The model's text split into what the user should read and the tool calls it asked for."""

    text: str
    tool_calls: list[ToolCall]


class MalformedToolCall(ValueError):
    """Text that is clearly meant as a tool call but cannot be read as one."""


def _call_from_object(obj: Any) -> ToolCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise MalformedToolCall('expected an object with a string "name"')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        arguments = args
    elif isinstance(args, dict):
        arguments = json.dumps(args, ensure_ascii=False)
    else:
        raise MalformedToolCall('"arguments" must be a JSON object')
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=arguments)


def _calls_from_json(text: str) -> list[ToolCall]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MalformedToolCall(f"invalid JSON: {exc}") from exc
    objects = value if isinstance(value, list) else [value]
    return [_call_from_object(o) for o in objects]


def _looks_like_call_object(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    objects = value if isinstance(value, list) else [value]
    return bool(objects) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in objects)


def parse_tool_calls(text: str) -> ParsedText:
    """Split a complete model reply into plain text and tool calls.

    Raises `MalformedToolCall` when a `<tool_call>` block cannot be read, so the model can be told.
    A fenced or bare JSON object that is not shaped like a call is ordinary answer text.
    """
    if _OPEN in text:
        head = text[: text.index(_OPEN)]
        calls: list[ToolCall] = []
        for match in _BLOCK.finditer(text):
            calls.extend(_calls_from_json(match.group(1)))
        return ParsedText(head.strip(), calls)
    stripped = text.strip()
    fence = _FENCE.fullmatch(stripped)
    if fence and _looks_like_call_object(fence.group(1)):
        return ParsedText("", _calls_from_json(fence.group(1)))
    if stripped.startswith(("{", "[")) and _looks_like_call_object(stripped):
        return ParsedText("", _calls_from_json(stripped))
    return ParsedText(text, [])


class StreamFilter:
    """Decides, while text streams in, which part is answer text the user may see now.

    Text that might be the start of a tool call is held back until it is clearly not one (or the
    stream ends), so that raw tool-call JSON never flashes up in the chat.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._shown = 0
        self._holding = False  # the rest of the reply is (probably) a tool call

    def feed(self, text: str) -> str:
        self._buffer += text
        if self._holding:
            return ""
        if self._shown == 0:
            head = self._buffer.lstrip()
            if not head or _maybe_call_start(head):
                if _definitely_call_start(head):
                    self._holding = True
                return ""
        pending = self._buffer[self._shown :]
        cut = pending.find(_OPEN)
        if cut >= 0:
            self._holding = True
            return self._release(cut)
        # Keep back a tail that could be the first characters of "<tool_call>".
        keep = _partial_suffix(pending, _OPEN)
        return self._release(len(pending) - keep)

    def _release(self, count: int) -> str:
        out = self._buffer[self._shown : self._shown + count]
        self._shown += count
        return out

    def finish(self) -> str:
        """Text still held back that turned out to be answer text (empty if it is a tool call)."""
        rest = self._buffer[self._shown :]
        try:
            parsed = parse_tool_calls(rest if self._shown else self._buffer)
        except MalformedToolCall:
            return ""
        if parsed.tool_calls:
            return parsed.text if self._shown == 0 else ""
        return rest

    @property
    def text(self) -> str:
        return self._buffer


def _maybe_call_start(head: str) -> bool:
    if head.startswith(("{", "[")):
        return True
    if head.startswith("```"):
        first_newline = head.find("\n")
        if first_newline < 0:
            return len(head) < 20
        return head[first_newline:].lstrip().startswith(("{", "[")) or not head[first_newline:].strip()
    return _OPEN.startswith(head[: len(_OPEN)]) or head.startswith(_OPEN)


def _definitely_call_start(head: str) -> bool:
    return head.startswith(_OPEN)


def _partial_suffix(text: str, marker: str) -> int:
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0
