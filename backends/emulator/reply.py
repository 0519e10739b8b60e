"""What the emulator answers: the scripted backend's decision, cut into timed output tokens.

What to say comes from `backends.scripted.script.decide()` (the directive convention, e.g.
`calc: 2+2`); this module only decides how many decode steps each part takes:

- an answer with no directive ("Echo: ..." in the scripted backend) becomes `max_tokens` filler
  tokens, as a benchmark with `ignore_eos` expects; finish_reason "length";
- scripted text streams one word per token;
- tool calls stream as a header delta, then the arguments in 4-character pieces (native), or as the
  `<tool_call>` text block in 4-character pieces (prompted mode).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from backends.emulator.tokens import FillerText
from backends.scripted.script import Reply, decide, prompted_call_text
from protocol.openai_wire import content_delta, tool_call_arguments_delta, tool_call_start_delta

ARGUMENT_PIECE_CHARS = 4
_DIRECTIVE_FREE_PREFIXES = ("Echo: ", "Hello! Ask me anything.")


@dataclass(slots=True)
class OutputPlan:
    """The whole answer to one request, known before the first decode step."""

    count: int
    finish_reason: str
    failure: str | None
    _scripted: list[str] | None
    _filler: FillerText | None
    _text: str | None
    _tool_calls: list[dict[str, Any]] | None

    def delta_json(self, index: int) -> str:
        """The JSON `delta` object streamed for output token `index`."""
        if self._filler is not None:
            return self._filler.delta_json(index)
        assert self._scripted is not None
        return self._scripted[index]

    def message(self) -> dict[str, Any]:
        """The assistant message of a non-streaming response."""
        if self._tool_calls is not None:
            return {"role": "assistant", "content": None, "tool_calls": self._tool_calls}
        if self._filler is not None:
            return {"role": "assistant", "content": self._filler.text(self.count)}
        return {"role": "assistant", "content": self._text or ""}


def plan_output(body: dict[str, Any], limit: int, seed: int, prompt_key: str) -> OutputPlan:
    """Decide the answer to `body`, at most `limit` tokens long (filler answers are exactly `limit`)."""
    reply = decide(body)
    failure = reply.failure if reply.failure in ("before", "midstream") else None
    if reply.tool_calls and not reply.prompted:
        pieces, calls = _native_tool_pieces(reply)
        return _scripted_plan(pieces, limit, "tool_calls", failure, None, calls)
    if reply.tool_calls:
        text = prompted_call_text(reply.tool_calls)
        return _scripted_plan(_text_pieces(text), limit, "stop", failure, text, None)
    if reply.text.startswith(_DIRECTIVE_FREE_PREFIXES) and not reply.hang:
        filler = FillerText(seed, prompt_key)
        return OutputPlan(limit, "length", failure, None, filler, None, None)
    words = reply.tokens() or [""]
    pieces = [content_delta(word) for word in words]
    return _scripted_plan(pieces, limit, "stop", failure, "".join(words[:limit]), None)


def _scripted_plan(
    pieces: list[str],
    limit: int,
    finish_reason: str,
    failure: str | None,
    text: str | None,
    tool_calls: list[dict[str, Any]] | None,
) -> OutputPlan:
    if len(pieces) > limit:
        return OutputPlan(limit, "length", failure, pieces[:limit], None, text, tool_calls)
    return OutputPlan(len(pieces), finish_reason, failure, pieces, None, text, tool_calls)


def _text_pieces(text: str) -> list[str]:
    step = ARGUMENT_PIECE_CHARS
    return [content_delta(text[i : i + step]) for i in range(0, len(text), step)]


def _native_tool_pieces(reply: Reply) -> tuple[list[str], list[dict[str, Any]]]:
    pieces: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, (name, arguments) in enumerate(reply.tool_calls):
        args = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call_id = f"call_{uuid.uuid4().hex[:12]}"
        calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        pieces.append(tool_call_start_delta(index, call_id, name))
        for start in range(0, len(args), ARGUMENT_PIECE_CHARS):
            pieces.append(tool_call_arguments_delta(index, args[start : start + ARGUMENT_PIECE_CHARS]))
    return pieces, calls
