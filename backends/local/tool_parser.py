"""The `chatstack_qwen` tool parser for vLLM: Hermes tool calls, plus the bare and fenced JSON calls that
small Qwen2.5-Coder models write instead.

This module runs inside the engine process (it imports vLLM). Importing it registers the parser; vLLM
finds it either through the `vllm.general_plugins` entry point (`register`), which is how a Ray Serve
deployment loads it, or through `--tool-parser-plugin <this file>`, which is how the embedded engine
does. The text logic lives in `tool_call_text`, which needs no vLLM.

Streaming holds back only text that may still become a call (a line starting with `{`, a fence, a
partial tag); `engine_based_streaming` makes vLLM call `finish_streaming` at the end of a reply, so text
held back by then (a reply ending in a code fence, say) is still delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# vLLM is only installed in the engine's virtualenv (it cannot share chatstack's), so mypy sees none of it.
from vllm.entrypoints.generate.base.protocol import (  # type: ignore[import-not-found]
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
)
from vllm.renderers.chat_utils import make_tool_call_id  # type: ignore[import-not-found]
from vllm.tool_parsers.abstract_tool_parser import ToolParserManager  # type: ignore[import-not-found]
from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser  # type: ignore[import-not-found]

from backends.local.tool_call_text import ParsedToolCall, StreamingToolCallText, scan_tool_calls

PARSER_NAME = "chatstack_qwen"


def accepted_tool_names(request: Any) -> set[str] | None:
    """Which names count as calls: none when the request offers no tools (or says `tool_choice: none`),
    else any name, as with the Hermes parser. A small model that calls a tool it was not offered then
    gets "there is no tool named ..." from the agent and answers in words, instead of showing the user
    raw JSON."""
    if not getattr(request, "tools", None) or getattr(request, "tool_choice", None) == "none":
        return set()
    return None


class ChatstackQwenToolParser(Hermes2ProToolParser):  # type: ignore[misc]
    """Hermes2ProToolParser that also accepts `{"name": ..., "arguments": ...}` as plain or fenced JSON."""

    engine_based_streaming = True

    def __init__(self, tokenizer: Any, tools: Any = None) -> None:
        super().__init__(tokenizer, tools)
        self._stream: StreamingToolCallText | None = None

    def extract_tool_calls(self, model_output: str, request: Any) -> ExtractedToolCallInformation:
        scan = scan_tool_calls(model_output, accepted_tool_names(request), final=True)
        if not scan.calls:
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[], content=model_output)
        content = model_output[: scan.content_end]
        return ExtractedToolCallInformation(
            tools_called=True,
            tool_calls=[
                ToolCall(type="function", function=FunctionCall(name=c.name, arguments=c.arguments))
                for c in scan.calls
            ],
            content=content if content.strip() else None,
        )

    def extract_tool_calls_streaming(
        self,
        previous_text: str,
        current_text: str,
        delta_text: str,
        previous_token_ids: Sequence[int],
        current_token_ids: Sequence[int],
        delta_token_ids: Sequence[int],
        request: Any,
    ) -> DeltaMessage | None:
        # Engine-based streaming hands over only the new text; the stream keeps the whole reply.
        if self._stream is None:
            self._stream = StreamingToolCallText(accepted_tool_names(request))
        content, calls = self._stream.feed(delta_text)
        deltas = [self._delta(call) for call in calls]
        if not content and not deltas:
            return None
        return DeltaMessage(content=content or None, tool_calls=deltas)

    def finish_streaming(self) -> DeltaMessage | None:
        """Called by vLLM when the reply ends: release the text held back, if it did not become a call."""
        if self._stream is None:
            return None
        content = self._stream.finish()
        return DeltaMessage(content=content) if content else None

    def _delta(self, call: ParsedToolCall) -> DeltaToolCall:
        index = len(self.prev_tool_call_arr)
        self.prev_tool_call_arr.append({"name": call.name, "arguments": call.arguments})
        self.streamed_args_for_tool.append(call.arguments)
        return DeltaToolCall(
            index=index,
            id=make_tool_call_id(),
            type="function",
            function=DeltaFunctionCall(name=call.name, arguments=call.arguments).model_dump(
                exclude_none=True
            ),
        )


def register() -> None:
    """The `vllm.general_plugins` entry point. Registration happens on import; this makes it explicit."""
    ToolParserManager.register_module(PARSER_NAME, force=True, module=ChatstackQwenToolParser)


register()
