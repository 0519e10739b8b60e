"""Find tool calls in a model's text: Hermes `<tool_call>` blocks, bare JSON objects and fenced JSON.

Small Qwen2.5-Coder models asked to call a tool often write `{"name": ..., "arguments": ...}` as plain
text, or inside a ```json fence, instead of the `<tool_call>` tags their chat template asks for. This
module recognises all three forms, both on a whole reply and incrementally while it streams. It is the
one tool-call text parser: the vLLM plugin (`tool_parser.py`, inside the engine's own virtualenv) and the
agent's prompted tool mode (`agent/prompted_tools.py`) both use it, so it depends on nothing but the
standard library.

A JSON value only counts as a call when it starts a line (or the reply, or follows a tag or fence) and has
the shape of a call (only the keys of one, arguments an object), and, if the caller restricts names, names
an accepted tool; anything else stays text. With `report_malformed` (the agent, which can ask the model
to try again), a `<tool_call>` tag commits to a call: what follows it is held back, and if it cannot be
read as one, the scan says why instead of treating it as text.
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
NOT_AN_OBJECT = 'expected an object with a string "name"'
BAD_ARGUMENTS = '"arguments" must be a JSON object'


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
    malformed: str | None = None
    """With `report_malformed`: why the `<tool_call>` block after `content_end` is not a call."""


class _Incomplete(Exception):
    """The text ends inside what may still become a tool call."""

    def __init__(self, calls: list[ParsedToolCall], block: int | None) -> None:
        super().__init__()
        self.calls = calls
        """The calls complete before the text ends."""
        self.block = block
        """Where the body of the `<tool_call>` block being read starts, when the tag committed to a call."""


def _as_call(value: Any, tool_names: Collection[str] | None) -> ParsedToolCall | str:
    """The call `value` describes, or why it is not one."""
    if not isinstance(value, dict):
        return NOT_AN_OBJECT
    if "name" not in value and isinstance(value.get("function"), dict):
        value = value["function"]  # the OpenAI shape {"type": "function", "function": {...}}
    name = value.get("name")
    if not isinstance(name, str):
        return NOT_AN_OBJECT
    if tool_names is not None and name not in tool_names:
        return f"there is no tool named {name!r}"
    if extra := set(value) - CALL_KEYS:
        return f"unexpected keys {sorted(extra)}"
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return BAD_ARGUMENTS
    if not isinstance(arguments, dict):
        return BAD_ARGUMENTS
    return ParsedToolCall(name, json.dumps(arguments, ensure_ascii=False))


def _malformed_block(text: str, body: int, tool_names: Collection[str] | None) -> str:
    """Why the `<tool_call>` block whose body starts at `body` is not a call, in words for the model."""
    block = text[body:].split(TAG_CLOSE, 1)[0].strip()
    try:
        value = json.loads(block)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    found = [_as_call(v, tool_names) for v in (value if isinstance(value, list) else [value])]
    return next((reason for reason in found if isinstance(reason, str)), NOT_AN_OBJECT)


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
    text: str, start: int, tool_names: Collection[str] | None, *, commit_tags: bool = False
) -> tuple[list[ParsedToolCall], int, int | None]:
    """The calls in the run of tags, fences and JSON values at `start`, where the run ends, and (with
    `commit_tags`) where the body of a `<tool_call>` block that is not a call starts.

    Raises `_Incomplete` when the text ends before the run can be judged. The list is empty when the
    run is not a tool call; text after the last call is ignored, as the Hermes parser does.
    """
    calls: list[ParsedToolCall] = []
    index = start
    block: int | None = None  # with commit_tags: the body of a tagged block not yet read as a call
    while True:
        while index < len(text) and (text[index].isspace() or text[index] == ","):
            index += 1
        rest = text[index:]
        if not rest:
            if calls and block is None:
                return calls, index, None
            raise _Incomplete(calls, block)
        if rest.startswith(TAG_OPEN):
            index += len(TAG_OPEN)
            block = index if commit_tags else None
        elif rest.startswith(TAG_CLOSE):
            index += len(TAG_CLOSE)
        elif rest.startswith(FENCE):
            index = _skip_fence(text, index)
            if index == len(text):
                if calls and block is None:
                    return calls, index, None
                raise _Incomplete(calls, block)  # the language word may still be arriving
        elif rest[0] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, index)
            except json.JSONDecodeError:
                # Not a call once it is closed; outside a committed tag, also as soon as it is hopeless.
                if _json_closed(text, index) or (block is None and _hopeless(text[index:], tool_names)):
                    return calls, index, block
                raise _Incomplete(calls, block) from None
            found = [_as_call(v, tool_names) for v in (value if isinstance(value, list) else [value])]
            if not found or any(isinstance(call, str) for call in found):
                if block is None and (later := _next_block(text, end, calls, commit_tags)) is not None:
                    index = later
                    continue
                return calls, end, block
            calls.extend(call for call in found if isinstance(call, ParsedToolCall))
            index, block = end, None
        elif not calls and any(s.startswith(rest) for s in (TAG_OPEN, TAG_CLOSE)):
            raise _Incomplete(calls, block)  # a tag cut in half
        elif block is None and (later := _next_block(text, index, calls, commit_tags)) is not None:
            index = later
        else:
            return calls, index, block


def _next_block(text: str, index: int, calls: list[ParsedToolCall], commit_tags: bool) -> int | None:
    """With `commit_tags`, once calls are found the rest of the reply belongs to them: its later
    `<tool_call>` blocks are calls too (as the prompt allows several), whatever text stands between."""
    if not (commit_tags and calls):
        return None
    found = text.find(TAG_OPEN, index)
    return found if found != -1 else None


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


def scan_tool_calls(
    text: str, tool_names: Collection[str] | None, *, final: bool, report_malformed: bool = False
) -> ToolCallScan:
    """Split `text` into plain text and tool calls.

    `tool_names` are the names accepted (None accepts any name; an empty collection finds no calls).
    With `final=False` (streaming) text that may still become a call is reported as `pending`; with
    `final=True` it is plain text. With `report_malformed`, text from a `<tool_call>` tag on is never
    plain text: a block that is not a call is held back (`pending`) and, once it cannot become one or
    the text is final, reported in `malformed`.
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
            calls, end, block = _parse_calls(text, start, tool_names, commit_tags=report_malformed)
        except _Incomplete as incomplete:
            if not final:
                return ToolCallScan(start, pending=True)
            # The agent (report_malformed) takes its calls from this final scan, so complete calls before
            # an unfinished one still count; a stream's last delta can only carry text.
            calls, block = (incomplete.calls if report_malformed else []), incomplete.block
            if not calls and block is None:
                return ToolCallScan(len(text))
        if block is not None:
            return ToolCallScan(start, calls, malformed=_malformed_block(text, block, tool_names))
        if calls:
            return ToolCallScan(start, calls)
        position = max(end, start + 1)


class StreamingToolCallText:
    """Feeds a reply in pieces; says which text can be shown and which calls are complete."""

    def __init__(self, tool_names: Collection[str] | None, *, report_malformed: bool = False) -> None:
        self._names = tool_names
        self._report_malformed = report_malformed
        self._text = ""
        self._shown = 0
        self._calls = 0
        self.malformed: str | None = None
        """With `report_malformed`: why the reply's `<tool_call>` block is not a call, as far as seen."""

    @property
    def text(self) -> str:
        return self._text

    @property
    def called(self) -> bool:
        """Whether a complete tool call has been found."""
        return self._calls > 0

    def feed(self, delta: str) -> tuple[str, list[ParsedToolCall]]:
        """Add `delta`; returns the text now safe to show and the calls completed by it."""
        self._text += delta
        return self._advance(final=False)

    def finish(self) -> str:
        """The reply has ended: the text still held back, if it did not become a call."""
        content, _ = self._advance(final=True)
        return content

    def _advance(self, *, final: bool) -> tuple[str, list[ParsedToolCall]]:
        scan = scan_tool_calls(self._text, self._names, final=final, report_malformed=self._report_malformed)
        self.malformed = scan.malformed
        if self._calls:
            # Once a call is out, the rest of the reply belongs to the calls (like the Hermes parser).
            content = ""
        else:
            content = self._text[self._shown : scan.content_end]
            self._shown = max(self._shown, scan.content_end)
        new_calls = scan.calls[self._calls :]
        self._calls += len(new_calls)
        return content, new_calls
