"""The OpenAI chat-completions wire format: the bytes of a streamed answer, the whole-answer body
and the error body, as every chatstack server writes them.

A streamed answer is a series of Server-Sent Events, each `data: <chat.completion.chunk>`, ended by
`data: [DONE]`:

    encoder = ChunkEncoder(new_completion_id(), "my-model", int(time.time()))
    encoder.role()                              # {"role":"assistant","content":""}
    encoder.content("Hello")                    # one per piece of text
    encoder.delta(tool_call_start_delta(0, "call_1", "calculator"))
    encoder.delta(tool_call_arguments_delta(0, '{"expression":"1+1"}'))
    encoder.finish("stop")                      # "stop", "length" or "tool_calls"
    encoder.usage(usage(12, 3))                 # only if `stream_options.include_usage` asked
    DONE

Chunks are compact JSON with non-ASCII text escaped, as vLLM and OpenAI write them (a chunk is
always valid ASCII, whatever text it carries). Writers that stream thousands of events a second (the
emulator, the bench's reference server) keep delta JSON they render once, and pass it to
`ChunkEncoder.delta`, which costs one concatenation per event.

An error is `{"error": {"code", "message", "type", ...}}` (`error_body`): the HTTP body of a failed
request, or an `error_event` when the stream has already begun, which OpenAI clients raise on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

DONE = b"data: [DONE]\n\n"
"""The last event of every streamed answer."""

_compact = json.JSONEncoder(separators=(",", ":")).encode
"""One encoder made once: `json.dumps(..., separators=...)` builds a new one on every call."""
_OPEN_CHOICE_END = b',"logprobs":null,"finish_reason":null}]}\n\n'


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object of a chat completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def content_delta(text: str, *, role: bool = False) -> str:
    """The delta JSON of a piece of answer text; with `role`, the first delta of the answer."""
    return _compact({"role": "assistant", "content": text} if role else {"content": text})


def tool_call_start_delta(index: int, call_id: str, name: str) -> str:
    """The delta JSON that opens tool call `index`: its id and function name, no arguments yet."""
    call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return _compact({"tool_calls": [call]})


def tool_call_arguments_delta(index: int, arguments: str) -> str:
    """The delta JSON of the next piece of tool call `index`'s arguments (a JSON text, in pieces)."""
    return _compact({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})


class ChunkEncoder:
    """The `chat.completion.chunk` events of one streamed completion, as SSE bytes.

    What stays the same for the whole stream (id, created, model) is rendered once, here.
    """

    __slots__ = ("_head", "_prefix")

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        head = f'data: {{"id":{_compact(completion_id)},"object":"chat.completion.chunk",'
        self._head = (head + f'"created":{int(created)},"model":{_compact(model)},').encode()
        self._prefix = self._head + b'"choices":[{"index":0,"delta":'

    def delta(self, delta_json: str) -> bytes:
        """One event whose choice carries `delta_json` (a JSON object) as its delta."""
        return self._prefix + delta_json.encode() + _OPEN_CHOICE_END

    def content(self, text: str) -> bytes:
        return self._prefix + content_delta(text).encode() + _OPEN_CHOICE_END

    def role(self) -> bytes:
        """The first event of an answer: the assistant's role, no text yet."""
        return self.delta('{"role":"assistant","content":""}')

    def finish(self, reason: str) -> bytes:
        """The event that ends the choice: an empty delta and why it ended."""
        return self._prefix + b'{},"logprobs":null,"finish_reason":' + _compact(reason).encode() + b"}]}\n\n"

    def usage(self, counts: Mapping[str, int]) -> bytes:
        """The usage-only event (no choices) that `stream_options.include_usage` asks for."""
        return self._head + b'"choices":[],"usage":' + _compact(dict(counts)).encode() + b"}\n\n"


def completion(
    completion_id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    counts: Mapping[str, int],
) -> dict[str, Any]:
    """A whole (not streamed) `chat.completion` with one choice."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": dict(counts),
    }


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status: the client's mistake (4xx) or the server's."""
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def error_body(code: str | None, message: str, type: str, **extra: Any) -> dict[str, Any]:
    """`{"error": {"code", "message", "type", **extra}}`; OpenAI's own `code` may be null."""
    return {"error": {"code": code, "message": message, "type": type, **extra}}


def error_event(code: str, message: str, type: str = "server_error") -> bytes:
    """An error inside a stream that has already begun (its HTTP status is sent): OpenAI clients
    raise on it."""
    return b"data: " + _compact(error_body(code, message, type)).encode() + b"\n\n"
