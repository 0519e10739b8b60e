"""Backend chunks are untrusted: a chunk of the wrong shape is the backend's bad response, not a crash."""

from __future__ import annotations

from typing import Any

import pytest

from agent.model import parse_chunk
from backends.client.errors import BackendBadResponse


def test_a_well_formed_chunk_is_read() -> None:
    chunk = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "Hi",
                    "tool_calls": [
                        {"index": 1, "id": "c1", "function": {"name": "calculator", "arguments": "{"}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    out = parse_chunk(chunk, "b")
    assert out.text == "Hi"
    assert [(d.index, d.id, d.name, d.arguments) for d in out.tool_calls] == [(1, "c1", "calculator", "{")]
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (3, 2)


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [{"delta": {"tool_calls": [{"index": "first"}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]},
        {"choices": [{"delta": {"content": 7}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": ["x"]}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}}]},
        {"choices": ["not an object"]},
        {"choices": 5},
        {"usage": {"prompt_tokens": "many"}, "choices": []},
    ],
)
def test_a_chunk_of_the_wrong_shape_is_a_bad_response(chunk: dict[str, Any]) -> None:
    with pytest.raises(BackendBadResponse) as caught:
        parse_chunk(chunk, "b")
    assert caught.value.backend == "b"


def test_a_lone_surrogate_in_model_text_becomes_encodable() -> None:
    chunk = {"choices": [{"delta": {"content": "a\ud800b €"}}]}
    assert parse_chunk(chunk, "b").text == "a?b €"
