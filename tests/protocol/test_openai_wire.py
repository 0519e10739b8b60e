"""The OpenAI wire format as chatstack writes it, read back with the official `openai` library's types."""

from __future__ import annotations

import json

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from protocol.openai_wire import (
    DONE,
    ChunkEncoder,
    completion,
    content_delta,
    error_body,
    error_event,
    error_type,
    tool_call_arguments_delta,
    tool_call_start_delta,
    usage,
)


def read(event: bytes) -> ChatCompletionChunk:
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    return ChatCompletionChunk.model_validate_json(event[6:])


def test_a_streamed_answer_reads_back_as_openai_chunks() -> None:
    encoder = ChunkEncoder("chatcmpl-1", 'model "é"', 1_700_000_000)
    role, text = read(encoder.role()), read(encoder.content("héllo </script>"))
    assert (role.id, role.model, role.created) == ("chatcmpl-1", 'model "é"', 1_700_000_000)
    assert role.choices[0].delta.role == "assistant"
    assert text.choices[0].delta.content == "héllo </script>"
    assert text.choices[0].finish_reason is None
    assert read(encoder.finish("length")).choices[0].finish_reason == "length"
    final = read(encoder.usage(usage(12, 3)))
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.total_tokens == 15
    # Escaped, so a chunk is ASCII whatever the text, a lone surrogate included (no UnicodeEncodeError).
    lone = encoder.content("€ \ud800")
    assert lone.isascii()
    assert json.loads(lone[6:])["choices"][0]["delta"]["content"] == "€ \ud800"
    assert DONE == b"data: [DONE]\n\n"


def test_tool_call_deltas_add_up_to_the_call() -> None:
    encoder = ChunkEncoder("chatcmpl-1", "m", 0)
    events = [encoder.delta(tool_call_start_delta(1, "call_7", "calculator"))]
    events += [encoder.delta(tool_call_arguments_delta(1, p)) for p in ('{"expr', 'ession": ', '"2+2"}')]
    calls = [call for e in events for call in read(e).choices[0].delta.tool_calls or []]
    assert {c.index for c in calls} == {1}
    assert (calls[0].id, calls[0].type) == ("call_7", "function")
    assert calls[0].function is not None
    assert calls[0].function.name == "calculator"
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {
        "expression": "2+2"
    }
    first = read(encoder.delta(content_delta("", role=True))).choices[0].delta
    assert (first.role, first.content) == ("assistant", "")


def test_a_whole_completion_reads_back() -> None:
    message = {"role": "assistant", "content": "4"}
    body = completion("chatcmpl-2", 5, "m", message, "stop", usage(7, 1))
    answer = ChatCompletion.model_validate(body)
    assert answer.choices[0].message.content == "4"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 8


def test_error_bodies() -> None:
    assert error_body("not_found", "no such thing", error_type(404), request_id="r1") == {
        "error": {
            "code": "not_found",
            "message": "no such thing",
            "type": "invalid_request_error",
            "request_id": "r1",
        }
    }
    assert error_type(502) == "server_error"
    assert list(error_body(None, "m", "t")["error"]) == ["code", "message", "type"]
    event = error_event("backend_timeout", "backend 'b': it did not answer in time")
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert json.loads(event[6:]) == {
        "error": {
            "code": "backend_timeout",
            "message": "backend 'b': it did not answer in time",
            "type": "server_error",
        }
    }
