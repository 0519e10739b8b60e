"""Find tool calls in a model's text: Hermes `<tool_call>` blocks, bare JSON objects and fenced JSON.

Small Qwen2.5-Coder models asked to call a tool often write `{"name": ..., "arguments": ...}` as plain
text, or inside a ```json fence, instead of the `<tool_call>` tags their chat template asks for. This
module recognises all three forms, both on a whole reply and incrementally while it streams. It depends
on nothing but the standard library, so the vLLM plugin (`tool_parser.py`) stays a thin adapter and this
logic is tested without vLLM.

A JSON value only counts as a call when it starts a line (or the reply, or follows a tag or fence) and has
the shape of a call (only the keys of one, arguments an object), and, if the caller restricts names, names
an accepted tool; anything else stays text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

MAX_PENDING_CHARS = 4096
"""Longest text held back while it may still become a call. A stream holding text back sends nothing,
and a client gives up on a silent stream; real calls to chatstack's tools are a few hundred characters."""
CALL_KEYS = frozenset({"name", "arguments", "parameters", "type", "id", "function"})
TAG_OPEN = "<tool_call>"
TAG_CLOSE = "</tool_call>"
FENCE = "```"
_STARTERS = (TAG_OPEN, FENCE)
_DECODER = json.JSONDecoder()
_FIRST_KEY = re.compile(r'\{\s*"((?:[^"\\]|\\.)*)"\s*:')
_FIRST_NAME = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class ParsedToolCall:
    name: str
    arguments: str
    """The arguments as a JSON object, serialised."""


@dataclass(frozen=True, slots=True)
class ToolCallScan:
    """What a text holds so far."""

    content_end: int
    """`text[:content_end]` is plain text, safe to show."""
    calls: list[ParsedToolCall] = field(default_factory=list)
    """Complete tool calls found after `content_end`."""
    pending: bool = False
    """Text after `content_end` may still turn out to be a tool call: hold it back."""


class _Incomplete(Exception):
    """The text ends inside what may still become a tool call."""


def _as_call(value: Any, tool_names: Collection[str] | None) -> ParsedToolCall | None:
    if not isinstance(value, dict):
        return None
    if "name" not in value and isinstance(value.get("function"), dict):
        value = value["function"]  # the OpenAI shape {"type": "function", "function": {...}}
    name = value.get("name")
    if not isinstance(name, str) or (tool_names is not None and name not in tool_names):
        return None
    if set(value) - CALL_KEYS:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ParsedToolCall(name, json.dumps(arguments, ensure_ascii=False))


def _json_closed(text: str, start: int) -> bool:
    """Whether the JSON-ish value opening at `start` closes its outermost bracket within `text`."""
    depth = 0
    in_string = escaped = False
    for char in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False


def _hopeless(partial: str, tool_names: Collection[str] | None) -> bool:
    """Whether an unfinished JSON value can already be told not to be a call, so it need not be held
    back to its end: its first key is not a call's, or it names a tool that is not offered (or it is
    too long to be worth holding)."""
    if len(partial) > MAX_PENDING_CHARS:
        return True
    body = partial[1:].lstrip() if partial.startswith("[") else partial
    if not body:
        return False
    if not body.startswith("{"):
        return True
    first_key = _FIRST_KEY.match(body)
    if first_key and first_key.group(1) not in CALL_KEYS:
        return True
    name = _FIRST_NAME.match(body)
    return bool(name and tool_names is not None and name.group(1) not in tool_names)


def _skip_fence(text: str, index: int) -> int:
    """Past a fence and its language word (```json)."""
    index += len(FENCE)
    while index < len(text) and (text[index].isalnum() or text[index] in "_-"):
        index += 1
    return index


def _parse_calls(
    text: str, start: int, tool_names: Collection[str] | None
) -> tuple[list[ParsedToolCall], int]:
    """The calls in the run of tags, fences and JSON values at `start`, and where the run ends.

    Raises `_Incomplete` when the text ends before the run can be judged. The list is empty when the
    run is not a tool call; text after the last call is ignored, as the Hermes parser does.
    """
    calls: list[ParsedToolCall] = []
    index = start
    while True:
        while index < len(text) and (text[index].isspace() or text[index] == ","):
            index += 1
        rest = text[index:]
        if not rest:
            if calls:
                return calls, index
            raise _Incomplete
        if rest.startswith(TAG_OPEN):
            index += len(TAG_OPEN)
        elif rest.startswith(TAG_CLOSE):
            index += len(TAG_CLOSE)
        elif rest.startswith(FENCE):
            index = _skip_fence(text, index)
            if index == len(text):
                if calls:
                    return calls, index
                raise _Incomplete  # the language word may still be arriving
        elif rest[0] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, index)
            except json.JSONDecodeError:
                if _json_closed(text, index) or _hopeless(text[index:], tool_names):
                    return calls, index
                raise _Incomplete from None
            found = [_as_call(v, tool_names) for v in (value if isinstance(value, list) else [value])]
            if not found or any(call is None for call in found):
                return calls, end
            calls.extend(call for call in found if call is not None)
            index = end
        elif not calls and any(s.startswith(rest) for s in (TAG_OPEN, TAG_CLOSE)):
            raise _Incomplete  # a tag cut in half
        else:
            return calls, index


def _candidates(text: str, position: int) -> int | None:
    """The next index at or after `position` where a tool call could start."""
    best: int | None = None
    for starter in _STARTERS:
        found = text.find(starter, position)
        if found != -1 and (best is None or found < best):
            best = found
    index = position
    while index < len(text) and (best is None or index < best):
        if text[index] in "{[" and _starts_line(text, index):
            return index
        index += 1
    return best


def _starts_line(text: str, index: int) -> bool:
    line_start = text.rfind("\n", 0, index) + 1
    return not text[line_start:index].strip()


def _held_suffix(text: str) -> int:
    """How many trailing characters could be the start of a tag or fence, to hold back while streaming."""
    for length in range(min(len(TAG_OPEN) - 1, len(text)), 0, -1):
        tail = text[-length:]
        if any(s.startswith(tail) for s in _STARTERS):
            return length
    return 0


def scan_tool_calls(text: str, tool_names: Collection[str] | None, *, final: bool) -> ToolCallScan:
    """Split `text` into plain text and tool calls.

    `tool_names` are the names accepted (None accepts any name; an empty collection finds no calls).
    With `final=False` (streaming) text that may still become a call is reported as `pending`; with
    `final=True` it is plain text.
    """
    if tool_names is not None and not tool_names:
        return ToolCallScan(len(text))
    position = 0
    while True:
        start = _candidates(text, position)
        if start is None:
            held = 0 if final else _held_suffix(text)
            return ToolCallScan(len(text) - held)
        try:
            calls, end = _parse_calls(text, start, tool_names)
        except _Incomplete:
            if final:
                return ToolCallScan(len(text))
            return ToolCallScan(start, pending=True)
        if calls:
            return ToolCallScan(start, calls)
        position = max(end, start + 1)


class StreamingToolCallText:
    """Feeds a reply in pieces; says which text can be shown and which calls are complete."""

    def __init__(self, tool_names: Collection[str] | None) -> None:
        self._names = tool_names
        self._text = ""
        self._shown = 0
        self._calls = 0

    @property
    def text(self) -> str:
        return self._text

    def feed(self, delta: str) -> tuple[str, list[ParsedToolCall]]:
        """Add `delta`; returns the text now safe to show and the calls completed by it."""
        self._text += delta
        return self._advance(final=False)

    def finish(self) -> str:
        """The reply has ended: the text still held back, if it did not become a call."""
        content, _ = self._advance(final=True)
        return content

    def _advance(self, *, final: bool) -> tuple[str, list[ParsedToolCall]]:
        scan = scan_tool_calls(self._text, self._names, final=final)
        if self._calls:
            # Once a call is out, the rest of the reply belongs to the calls (like the Hermes parser).
            content = ""
        else:
            content = self._text[self._shown : scan.content_end]
            self._shown = max(self._shown, scan.content_end)
        new_calls = scan.calls[self._calls :]
        self._calls += len(new_calls)
        return content, new_calls
