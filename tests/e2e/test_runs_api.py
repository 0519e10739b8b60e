"""Agent runs over HTTP: typed SSE events, tools, resume, cancel, and failing backends."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.support.processes import ServerProcess
from tests.support.search_servers import SearchServerState
from tests.support.sse import Event, answer_text, ask, new_conversation, read_events, start_message

pytestmark = pytest.mark.slow


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def wait_for_status(
    client: httpx.AsyncClient, run_id: str, status: str, timeout: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        run = (await client.get(f"/api/runs/{run_id}")).json()
        if run["status"] == status or time.monotonic() > deadline:
            assert run["status"] == status, run
            return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)


async def test_plain_answer_streams_typed_events(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, "tokens: 30")
    assert types(events)[0] == "run.started"
    assert types(events)[-2:] == ["message.completed", "run.finished"]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    deltas = [e for e in events if e.type == "message.delta"]
    assert len(deltas) == 30
    completed = events[-2].data
    assert completed["content"] == answer_text(events)
    assert completed["status"] == "complete"
    assert completed["usage"]["completion_tokens"] == 30
    finished = events[-1].data
    assert finished["status"] == "completed"
    assert finished["timings"]["llm_calls"] == 1
    assert finished["timings"]["tool_calls"] == 0
    assert 0 < finished["timings"]["ttft_ms"] <= finished["timings"]["total_ms"]

    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["content"] == completed["content"]
    assert detail["messages"][1]["backend"] == "scripted"
    run = (await client.get(f"/api/runs/{events[0].data['run_id']}")).json()
    assert run["status"] == "completed"
    assert run["llm_calls"] == 1
    assert run["completion_tokens"] == 30


async def test_tokens_arrive_before_the_answer_ends(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "tokens: 40\ndelay: 25")
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    from httpx_sse import aconnect_sse

    async with aconnect_sse(client, "GET", f"/api/runs/{run_id}/events") as source:
        async for sse in source.aiter_sse():
            arrivals.append((sse.event, time.monotonic() - started))
    first_delta = next(t for kind, t in arrivals if kind == "message.delta")
    finished = next(t for kind, t in arrivals if kind == "run.finished")
    # 40 tokens 25 ms apart take about a second; the first must come long before the end.
    assert finished - first_delta > 0.5


@pytest.mark.parametrize("backend", ["scripted", "scripted-prompted"])
async def test_calculator_tool_native_and_prompted(client: httpx.AsyncClient, backend: str) -> None:
    cid = await new_conversation(client, backend=backend)
    events = await ask(client, cid, "calc: 1234*5678")
    assert types(events) == [
        "run.started",
        "message.completed",
        "tool.started",
        "tool.finished",
        *["message.delta"] * 4,
        "message.completed",
        "run.finished",
    ]
    started, finished = events[2].data, events[3].data
    assert started["name"] == "calculator"
    assert started["arguments"] == {"expression": "1234*5678"}
    assert finished["call_id"] == started["call_id"]
    assert finished["output"] == "7006652"
    assert finished["error"] is None
    assert finished["duration_ms"] >= 0
    assert answer_text(events) == "The result is 7006652."
    # No raw tool-call text leaks into the answer, in either mode.
    assert "tool_call" not in answer_text(events)
    assert events[-1].data["timings"]["tool_calls"] == 1
    assert events[-1].data["timings"]["llm_calls"] == 2

    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["name"] == "calculator"
    assert messages[2]["tool_call_id"] == messages[1]["tool_calls"][0]["id"]
    assert messages[2]["content"] == "7006652"


async def test_web_search_returns_sources(
    client: httpx.AsyncClient, search: tuple[str, SearchServerState]
) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, "search: chatstack release")
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["name"] == "web_search"
    assert finished.data["error"] is None
    urls = [s["url"] for s in finished.data["sources"]]
    assert urls[0] == "https://example.org/chatstack-release"
    assert "untrusted" in finished.data["output"].lower()
    assert "chatstack release" in search[1].requests
    assert "https://example.org/chatstack-release" in answer_text(events)
    stored = (await client.get(f"/api/conversations/{cid}")).json()["messages"][2]
    assert stored["sources"][0]["url"] == urls[0]


async def test_two_tools_in_one_step(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, "calc+search: 2+3")
    names = sorted(e.data["name"] for e in events if e.type == "tool.finished")
    assert names == ["calculator", "web_search"]
    assert events[-1].data["status"] == "completed"


async def test_tool_less_backend_answers_without_tools(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, backend="scripted-plain")
    events = await ask(client, cid, "calc: 2+2")
    assert "tool.started" not in types(events)
    assert events[-1].data["status"] == "completed"


async def test_malformed_tool_call_is_fed_back_not_fatal(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, "badargs")
    finished = next(e for e in events if e.type == "tool.finished")
    assert finished.data["error"].startswith("malformed tool call")
    assert events[-1].data["status"] == "completed"
    assert "problem" in answer_text(events)


async def test_step_limit_ends_with_a_clear_error(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, "loop")
    error = next(e for e in events if e.type == "run.error")
    assert error.data["code"] == "step_limit"
    assert events[-1].data["status"] == "failed"
    # CHATSTACK_AGENT_MAX_STEPS=4: three tool rounds, then a last call without tools.
    assert events[-1].data["timings"]["llm_calls"] == 4
    assert events[-1].data["timings"]["tool_calls"] == 3
    # The conversation is still usable.
    assert (await ask(client, cid, "hello again"))[-1].data["status"] == "completed"


async def test_resume_with_last_event_id_loses_and_repeats_nothing(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "tokens: 60\ndelay: 10")
    first = await read_events(client, run_id, stop_after=7)  # then disconnect mid-answer
    rest = await read_events(client, run_id, last_event_id=first[-1].id)
    combined = first + rest
    assert [e.id for e in combined] == list(range(1, len(combined) + 1))
    assert combined[-1].type == "run.finished"
    # A full replay after the fact matches what the two halves saw.
    replay = await read_events(client, run_id)
    assert [(e.id, e.type, e.data) for e in replay] == [(e.id, e.type, e.data) for e in combined]
    # ?after= works like the header.
    tail = (await client.get(f"/api/runs/{run_id}/events", params={"after": len(replay) - 1})).text
    assert "event: run.finished" in tail
    assert "event: run.started" not in tail


async def test_client_disconnect_does_not_stop_the_run(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "tokens: 50\ndelay: 10")
    await read_events(client, run_id, stop_after=3)
    await wait_for_status(client, run_id, "completed")
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert messages[-1]["role"] == "assistant"
    assert len(messages[-1]["content"].split()) == 50


async def test_second_message_while_running_is_409(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "tokens: 100\ndelay: 20")
    response = await client.post(f"/api/conversations/{cid}/messages", json={"content": "again"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_in_progress"
    assert (await client.get(f"/api/conversations/{cid}")).json()["active_run_id"] == run_id
    await client.post(f"/api/runs/{run_id}/cancel")


async def test_cancel_keeps_partial_answer_and_conversation_continues(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "tokens: 400\ndelay: 20")
    seen = await read_events(client, run_id, stop_after=6)
    started = time.monotonic()
    response = await client.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - started < 2, "cancel must stop generation promptly"
    rest = await read_events(client, run_id, last_event_id=seen[-1].id)
    assert rest[-1].type == "run.finished"
    assert rest[-1].data["status"] == "cancelled"
    completed = next(e for e in rest if e.type == "message.completed")
    assert completed.data["status"] == "cancelled"
    partial = completed.data["content"]
    assert 0 < len(partial.split()) < 400

    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assert messages[-1]["status"] == "cancelled"
    assert messages[-1]["content"] == partial
    # Cancelling again is harmless; the next message works.
    assert (await client.post(f"/api/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    assert (await ask(client, cid, "hello"))[-1].data["status"] == "completed"


async def test_cancel_during_a_tool_call_closes_it(
    client: httpx.AsyncClient, search: tuple[str, SearchServerState]
) -> None:
    cid = await new_conversation(client)
    search[1].delay_s = 5
    try:
        run_id = await start_message(client, cid, "search: slow topic")
        seen = await read_events(client, run_id, stop_after=3)  # run.started, message.completed, tool.started
        assert seen[-1].type == "tool.started"
        assert (await client.post(f"/api/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    finally:
        search[1].delay_s = 0
    rest = await read_events(client, run_id, last_event_id=seen[-1].id)
    tool_finished = next(e for e in rest if e.type == "tool.finished")
    assert tool_finished.data["error"] == "cancelled"
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    call_id = seen[-1].data["call_id"]
    assert any(m["role"] == "tool" and m["tool_call_id"] == call_id for m in messages)
    # The model sees a consistent history next time: the next turn (with a tool) completes.
    events = await ask(client, cid, "calc: 2+2")
    assert events[-1].data["status"] == "completed"
    assert answer_text(events) == "The result is 4."


async def test_backend_down_gives_run_error_and_keeps_conversation(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    await ask(client, cid, "first")
    events = await ask(client, cid, "hello", backend="offline")
    assert types(events) == ["run.started", "run.error", "run.finished"]
    assert events[1].data["code"] == "backend_unavailable"
    assert "offline" in events[1].data["message"]
    assert events[2].data["status"] == "failed"
    detail = (await client.get(f"/api/conversations/{cid}")).json()
    assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == ["first", "hello"]
    # Switching back works from the next message.
    assert (await ask(client, cid, "again", backend="scripted"))[-1].data["status"] == "completed"


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("fail: before", "backend_http_error"),
        ("fail: midstream", "backend_bad_response"),
        ("fail: garbage", "backend_bad_response"),
        ("fail: nodone", "backend_bad_response"),
    ],
)
async def test_failing_backend_mid_stream(client: httpx.AsyncClient, directive: str, code: str) -> None:
    cid = await new_conversation(client)
    events = await ask(client, cid, f"tokens: 20\n{directive}")
    error = next(e for e in events if e.type == "run.error")
    assert error.data["code"] == code, error.data
    assert events[-1].data["status"] == "failed"
    run = (await client.get(f"/api/runs/{events[0].data['run_id']}")).json()
    assert run["status"] == "failed"
    assert run["error_code"] == code
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    partial = answer_text(events)
    if partial:
        assert messages[-1]["status"] == "error"
        assert messages[-1]["content"] == partial
    assert (await ask(client, cid, "next"))[-1].data["status"] == "completed"


async def test_deleting_a_conversation_stops_its_run(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hang")
    await read_events(client, run_id, stop_after=2)
    assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    assert (await client.get(f"/api/runs/{run_id}")).status_code == 404


async def test_history_reaches_the_model(client: httpx.AsyncClient, scripted: ServerProcess) -> None:
    # The scripted backend answers "Echo: <latest user message>"; the stored history must be complete
    # for the next turn, which the backend would reject (400) if tool calls had no results.
    cid = await new_conversation(client)
    await ask(client, cid, "calc: 1+1")
    events = await ask(client, cid, "what did I ask?")
    assert answer_text(events) == "Echo: what did I ask?"


@pytest.mark.parametrize("bad", ["abc", "-1", "99999999999999999999", "1.5"])
async def test_bad_last_event_id_is_a_422(client: httpx.AsyncClient, bad: str) -> None:
    cid = await new_conversation(client)
    run_id = await start_message(client, cid, "hello")
    response = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": bad})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_event_id"


async def test_backend_down_before_first_token_fails_over(client: httpx.AsyncClient) -> None:
    cid = await new_conversation(client, backend="flaky")  # unreachable, with `fallback: scripted`
    events = await ask(client, cid, "calc: 3+4")
    assert events[-1].data["status"] == "completed"
    assert answer_text(events) == "The result is 7."
    assert "run.error" not in types(events)


async def test_auto_routes_tool_steps_and_answers_to_their_backends(client: httpx.AsyncClient) -> None:
    backends = (await client.get("/api/backends")).json()
    assert backends["auto"] == {"tools": "scripted", "throughput": "scripted-plain"}
    cid = await new_conversation(client, backend="auto")
    events = await ask(client, cid, "calc: 2+3")
    assert events[0].data["backend"] == "auto"
    assert answer_text(events) == "The result is 5."
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert [m["backend"] for m in assistants] == ["scripted", "scripted-plain"]
    # A question that needs no tool is answered where it was asked: the tool-capable backend decides.
    events = await ask(client, cid, "hello")
    assert (await client.get(f"/api/conversations/{cid}")).json()["messages"][-1]["backend"] == "scripted"
