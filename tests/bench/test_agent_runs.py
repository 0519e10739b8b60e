"""A run's timeline from chatstack's events: model time, tool time, the first answer token."""

from __future__ import annotations

import json

from bench.clients.agent_runs import events_request, read_run_events
from bench.clients.exchange import Exchange


def event(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def stream(*pieces: tuple[float, bytes]) -> Exchange:
    return Exchange(sent_at=0.0, status=200, chunks=list(pieces), ended_at=pieces[-1][0])


def test_tool_run_timeline() -> None:
    timeline = read_run_events(
        stream(
            (0.010, event("run.started", {"run_id": "r"})),
            (0.050, event("message.delta", {"text": "Let me"})),
            (0.100, event("message.completed", {"content": "Let me", "tool_calls": [{"id": "c"}]})),
            (
                0.110,
                event(
                    "tool.started", {"call_id": "c", "name": "calculator", "arguments": {"expression": "1+1"}}
                ),
            ),
            (
                0.112,
                event("tool.started", {"call_id": "d", "name": "web_search", "arguments": {"query": "q"}}),
            ),
            (0.130, event("tool.finished", {"call_id": "c", "name": "calculator", "error": None})),
            (0.160, event("tool.finished", {"call_id": "d", "name": "web_search", "error": None})),
            (0.200, event("message.delta", {"text": "It is 2"})),
            (0.260, event("message.completed", {"content": "It is 2", "tool_calls": []})),
            (
                0.270,
                event(
                    "run.finished",
                    {"status": "completed", "timings": {"llm_calls": 2}, "usage": {"completion_tokens": 9}},
                ),
            ),
        )
    )
    assert timeline.error is None
    assert (timeline.first_event_at, timeline.first_token_at, timeline.first_answer_token_at) == (
        0.010,
        0.050,
        0.200,
    )
    assert (timeline.llm_calls, timeline.tool_calls, timeline.tool_names) == (
        2,
        2,
        ["calculator", "web_search"],
    )
    assert abs(timeline.llm_s - ((0.100 - 0.010) + (0.260 - 0.160))) < 1e-9
    assert abs(timeline.tools_s - (0.160 - 0.110)) < 1e-9  # parallel calls count once
    assert (timeline.answer, timeline.output_tokens, timeline.finished_at) == ("It is 2", 9, 0.270)


def test_failed_runs() -> None:
    error = read_run_events(
        stream(
            (0.01, event("run.started", {})),
            (0.02, event("run.error", {"code": "backend_unavailable", "message": "down"})),
            (0.03, event("run.finished", {"status": "failed"})),
        )
    )
    assert error.error == "run.error backend_unavailable: down"
    cut = read_run_events(
        stream((0.01, event("run.started", {})), (0.02, event("message.delta", {"text": "a"})))
    )
    assert cut.error == "the event stream ended without run.finished"
    assert (
        read_run_events(Exchange(status=404, chunks=[(0.0, b"{}")])).error == "HTTP 404 on the event stream"
    )


def test_events_url_may_be_absolute() -> None:
    assert events_request("http://h:1/api/runs/abc/events?after=3").path == "/api/runs/abc/events?after=3"
