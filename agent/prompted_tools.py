"""Tool calling for backends without a native tool parser: tools described in the prompt, calls parsed
from the model's text.

The text is read by the one tool-call text parser (`backends/local/tool_call_text.py`, which the vLLM
plugin uses too): `<tool_call>{...}</tool_call>` blocks (Hermes style), a fenced ```json block, or a
bare JSON object starting a line, each holding `{"name": ..., "arguments": {...}}` (`parameters` is
accepted for `arguments`), because small and non-tool-tuned models wander between them. Unlike the
engine, the agent can tell the model its call was unreadable, so a `<tool_call>` block that is not a
call is reported (`MalformedToolCall`) rather than shown as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from agent import prompts
from agent.messages import ToolCall, new_call_id
from backends.local.tool_call_text import StreamingToolCallText, scan_tool_calls
from tools.base import Tool


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


def parse_tool_calls(text: str) -> ParsedText:
    """Split a complete model reply into plain text and tool calls.

    Raises `MalformedToolCall` when a `<tool_call>` block cannot be read, so the model can be told.
    A fenced or bare JSON value that is not shaped like a call is ordinary answer text.
    """
    scan = scan_tool_calls(text, None, final=True, report_malformed=True)
    if scan.malformed is not None:
        raise MalformedToolCall(scan.malformed)
    if not scan.calls:
        return ParsedText(text, [])
    calls = [ToolCall(id=new_call_id(), name=c.name, arguments=c.arguments) for c in scan.calls]
    return ParsedText(text[: scan.content_end].strip(), calls)


class StreamFilter:
    """Decides, while text streams in, which part is answer text the user may see now.

    Text that might be the start of a tool call is held back until it is clearly not one (or the
    stream ends), so that raw tool-call JSON never flashes up in the chat.
    """

    def __init__(self) -> None:
        self._stream = StreamingToolCallText(None, report_malformed=True)
        self._leading = ""  # whitespace before anything shown: a reply that is only a call shows nothing
        self._showing = False

    def feed(self, text: str) -> str:
        content, _ = self._stream.feed(text)
        if self._showing:
            return content
        self._leading += content
        if not self._leading.strip():
            return ""
        self._showing = True
        content, self._leading = self._leading, ""
        return content

    def finish(self) -> str:
        """Text still held back that turned out to be answer text (empty if it is a tool call)."""
        rest = self._leading + self._stream.finish()
        self._leading = ""
        if (self._stream.called or self._stream.malformed is not None) and not rest.strip():
            return ""
        return rest

    @property
    def text(self) -> str:
        return self._stream.text
