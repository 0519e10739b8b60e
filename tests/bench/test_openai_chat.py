"""Reading streamed chat completions: what counts as a token, and what counts as a failure."""

from __future__ import annotations

import json

from bench.clients.exchange import Exchange, Origin
from bench.clients.openai_chat import chat_request, read_chat_stream


def chunk(
    delta: dict[str, object] | None = None, usage: dict[str, int] | None = None, finish: str | None = None
) -> bytes:
    body: dict[str, object] = {
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


def exchange(*pieces: tuple[float, bytes], status: int = 200, error: str | None = None) -> Exchange:
    return Exchange(
        sent_at=0.0, status=status, chunks=list(pieces), ended_at=pieces[-1][0] if pieces else 0, error=error
    )


def test_tokens_usage_and_done() -> None:
    outcome = read_chat_stream(
        exchange(
            (0.05, chunk({"role": "assistant", "content": ""})),
            (0.06, chunk({"content": "Hi"})),
            (0.07, chunk({}, finish="stop")),
            (0.08, chunk(None, usage={"prompt_tokens": 5, "completion_tokens": 2})),
            (0.08, b"data: [DONE]\n\n"),
        )
    )
    assert outcome.error is None
    assert outcome.token_times == [0.05, 0.06, 0.07]
    assert outcome.last_data_at == 0.08
    assert (outcome.output_tokens, outcome.token_source, outcome.prompt_tokens) == (2, "usage", 5)
    assert outcome.finish_reason == "stop"


def test_without_usage_the_chunks_are_counted() -> None:
    outcome = read_chat_stream(
        exchange((0.1, chunk({"content": "a"}) + chunk({"content": "b"}) + b"data: [DONE]\n\n"))
    )
    assert (outcome.output_tokens, outcome.token_source) == (2, "chunks")


def test_failures() -> None:
    assert read_chat_stream(exchange((0.1, b'{"error": "no"}'), status=500)).error.startswith("HTTP 500")  # type: ignore[union-attr]
    assert read_chat_stream(exchange(error="timeout")).error == "timeout"
    assert (
        read_chat_stream(exchange((0.1, chunk({"content": "a"})))).error == "the stream ended without [DONE]"
    )
    assert (
        read_chat_stream(exchange((0.1, chunk({"content": " "}) + b"data: [DONE]\n\n"))).error
        == "empty answer"
    )
    bad = read_chat_stream(exchange((0.1, b"data: {nope\n\ndata: [DONE]\n\n")))
    assert bad.error is not None
    assert "not JSON" in bad.error
    event = read_chat_stream(
        exchange((0.1, b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n'))
    )
    assert event.error is not None
    assert "overloaded" in event.error


def test_a_failure_says_whether_the_server_answered_it() -> None:
    """`server`: the exchange completed and the answer is the failure; `transport`: it never completed."""
    answered = [
        exchange((0.1, b'{"error": "busy"}'), status=503),
        exchange((0.1, chunk({"content": "a"}))),  # ended properly, but without [DONE]
        exchange((0.1, b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n')),
    ]
    for failed in answered:
        assert read_chat_stream(failed).error_source == "server"
    cut = exchange(
        (0.1, chunk({"content": "a"})), error="the server closed the connection before the response ended"
    )
    assert read_chat_stream(cut).error_source == "transport"
    assert read_chat_stream(exchange(status=0, error="connect failed: refused")).error_source == "transport"
    ok = exchange((0.1, chunk({"content": "a"}) + b"data: [DONE]\n\n"))
    assert read_chat_stream(ok).error_source is None


def test_tool_calls_count_as_an_answer() -> None:
    call = {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "calculator", "arguments": ""}}]}
    outcome = read_chat_stream(exchange((0.1, chunk(call) + b"data: [DONE]\n\n")))
    assert outcome.error is None
    assert outcome.tool_calls == 1


def test_request_is_encoded_once_with_usage_requested() -> None:
    request = chat_request(model="m", prompt="hello", max_tokens=7, api_key="k")
    origin = Origin.parse("http://127.0.0.1:9000/v1")
    wire = request.wire(origin)
    assert wire is request.wire(origin)
    head, body = wire.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:9000")
    assert b"authorization: Bearer k" in head
    assert f"content-length: {len(body)}".encode() in head
    sent = json.loads(body)
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 7
