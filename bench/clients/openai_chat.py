"""Chat completions: the request the bench sends, and what it reads back from a streamed answer.

The reading follows vLLM's benchmark (`vllm/benchmarks/lib/endpoint_request_func.py`) so numbers are
comparable: the first token is the first chunk that carries `choices`; each later such chunk is one
inter-token interval; the answer ends at the last data chunk; the output length is the server's
`usage.completion_tokens` (requested with `stream_options.include_usage`), else the count of chunks.
Unlike vLLM it also fails answers that break the stream's contract (see `StreamOutcome.error`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.clients.exchange import Exchange, Request
from bench.clients.sse import iter_events


def chat_request(
    *,
    model: str,
    prompt: str,
    max_tokens: int | None,
    api_key: str | None = None,
    ignore_eos: bool = False,
    extra_body: dict[str, Any] | None = None,
) -> Request:
    """A streamed `/chat/completions` request for one user message, usage included."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if ignore_eos:
        body["ignore_eos"] = True
    body.update(extra_body or {})
    headers = [("content-type", "application/json"), ("accept", "text/event-stream")]
    if api_key:
        headers.append(("authorization", f"Bearer {api_key}"))
    return Request("POST", "/chat/completions", json.dumps(body).encode(), tuple(headers))


@dataclass(slots=True)
class StreamOutcome:
    """What one streamed answer told us, with the arrival time of each part."""

    token_times: list[float] = field(default_factory=list)
    """Arrival of each chunk that carried `choices` (vLLM's tokens); the first is the first token."""
    last_data_at: float | None = None
    text: str = ""
    tool_calls: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False
    error: str | None = None
    error_source: str | None = None
    """Where a failure came from. `server`: the HTTP exchange ended as its framing says and the answer
    itself is the failure (an error status, an error event, a stream that broke its contract).
    `transport`: the exchange did not complete (connection refused, reset or closed mid-response,
    invalid HTTP, timeout), which can be the server's fault or the client's."""

    @property
    def output_tokens(self) -> int:
        """The usage count when the server sent one, else one per token chunk."""
        return self.completion_tokens if self.completion_tokens is not None else len(self.token_times)

    @property
    def token_source(self) -> str:
        return "usage" if self.completion_tokens is not None else "chunks"


def read_chat_stream(exchange: Exchange) -> StreamOutcome:
    """Parse a streamed chat completion; `error` says why it does not count as a success, if so."""
    outcome = StreamOutcome()
    if exchange.error is not None:
        outcome.error = exchange.error
    elif not 200 <= exchange.status < 300:
        outcome.error = f"HTTP {exchange.status}: {exchange.body()[:300].decode('utf-8', 'replace')}"
    if outcome.error is not None and exchange.status == 0:
        outcome.error_source = "transport"
        return outcome
    for event in iter_events(exchange.chunks):
        if event.data == "[DONE]":
            outcome.done = True
            continue
        if event.event == "error":
            outcome.error = outcome.error or f"error event: {event.data[:300]}"
            continue
        try:
            data = json.loads(event.data)
        except ValueError:
            outcome.error = outcome.error or f"a chunk is not JSON: {event.data[:120]!r}"
            continue
        if not isinstance(data, dict):
            continue
        outcome.last_data_at = event.at
        if "error" in data:
            outcome.error = outcome.error or f"error event: {json.dumps(data['error'])[:300]}"
            continue
        _read_chunk(data, event.at, outcome)
    if outcome.error is None:
        if not outcome.done:
            outcome.error = "the stream ended without [DONE]"
        elif not outcome.text.strip() and not outcome.tool_calls:
            outcome.error = "empty answer"
    if outcome.error is not None:
        outcome.error_source = "transport" if exchange.error is not None else "server"
    return outcome


def _read_chunk(data: dict[str, Any], at: float, outcome: StreamOutcome) -> None:
    usage = data.get("usage")
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            outcome.completion_tokens = usage["completion_tokens"]
        if isinstance(usage.get("prompt_tokens"), int):
            outcome.prompt_tokens = usage["prompt_tokens"]
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        return
    outcome.token_times.append(at)
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    if isinstance(delta, dict):
        outcome.text += str(delta.get("content") or "") + str(delta.get("reasoning_content") or "")
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            outcome.tool_calls += sum(1 for c in calls if isinstance(c, dict) and c.get("id"))
    if choice.get("finish_reason"):
        outcome.finish_reason = str(choice["finish_reason"])
