"""Where an agent run's time went, from recorded event sequences: tool time per tool server, time
waiting for the user's approval, and what is left for chatstack itself (issue 12)."""

from __future__ import annotations

import json
import math

from bench.clients.agent_runs import read_run_events
from bench.clients.exchange import Exchange
from bench.records import AgentRecord
from bench.summary import GeneratorHealth, summarize_agent_runs


def event(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def stream(*pieces: tuple[float, bytes]) -> Exchange:
    return Exchange(sent_at=0.0, status=200, chunks=list(pieces), ended_at=pieces[-1][0])


def close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


STARTED = (0.01, event("run.started", {"run_id": "r"}))
ASKED = (0.1, event("message.completed", {"content": "", "tool_calls": [{"id": "c"}]}))


def answered(at: float) -> list[tuple[float, bytes]]:
    return [
        (at, event("message.completed", {"content": "done", "tool_calls": []})),
        (at + 0.01, event("run.finished", {"status": "completed", "timings": {}})),
    ]


def test_tool_time_is_split_by_server() -> None:
    timeline = read_run_events(
        stream(
            STARTED,
            ASKED,
            # A built-in tool from a server older than MCP tools (no `server`), and two MCP servers'
            # tools in parallel with it: one of them called twice at once.
            (0.10, event("tool.started", {"call_id": "a", "name": "calculator", "arguments": {}})),
            (
                0.11,
                event(
                    "tool.started", {"call_id": "b", "name": "time__now", "server": "time", "arguments": {}}
                ),
            ),
            (
                0.12,
                event(
                    "tool.started", {"call_id": "c", "name": "time__now", "server": "time", "arguments": {}}
                ),
            ),
            (
                0.13,
                event(
                    "tool.started", {"call_id": "d", "name": "docs__find", "server": "docs", "arguments": {}}
                ),
            ),
            (0.14, event("tool.finished", {"call_id": "a", "name": "calculator"})),
            (0.15, event("tool.finished", {"call_id": "b", "name": "time__now", "server": "time"})),
            (0.17, event("tool.finished", {"call_id": "c", "name": "time__now", "server": "time"})),
            (0.30, event("tool.finished", {"call_id": "d", "name": "docs__find", "server": "docs"})),
            *answered(0.5),
        )
    )
    assert timeline.error is None
    assert set(timeline.tools_by_server) == {"builtin", "time", "docs"}
    assert close(timeline.tools_by_server["builtin"], 0.04)
    assert close(timeline.tools_by_server["time"], 0.06)  # 0.11-0.17: its parallel calls count once
    assert close(timeline.tools_by_server["docs"], 0.17)
    assert close(timeline.tools_s, 0.20)  # all of them: 0.10-0.30
    assert timeline.tool_calls_by_server == {"builtin": 1, "time": 2, "docs": 1}
    assert (timeline.approval_wait_s, timeline.approvals) == (0.0, 0)
    assert close(timeline.llm_s, 0.09 + 0.2)


def test_an_approved_call_waits_for_the_user_not_for_the_tool() -> None:
    timeline = read_run_events(
        stream(
            STARTED,
            ASKED,
            (0.11, event("tool.approval_required", {"call_id": "c", "name": "t__x", "server": "t"})),
            (2.11, event("tool.approval_resolved", {"call_id": "c", "approved": True, "by": "ann"})),
            (2.12, event("tool.started", {"call_id": "c", "name": "t__x", "server": "t", "arguments": {}})),
            (2.15, event("tool.finished", {"call_id": "c", "name": "t__x", "server": "t"})),
            *answered(2.35),
        )
    )
    assert (timeline.approvals, timeline.tool_calls_by_server) == (1, {"t": 1})
    assert close(timeline.approval_wait_s, 2.0)
    assert close(timeline.tools_s, 0.03)
    assert close(timeline.tools_by_server["t"], 0.03)
    assert close(timeline.llm_s, 0.09 + 0.2)


def test_a_wait_inside_a_tools_window_is_the_users() -> None:
    # A server may announce the call before it asks: the wait is then inside the tool's window.
    timeline = read_run_events(
        stream(
            STARTED,
            ASKED,
            (0.10, event("tool.started", {"call_id": "c", "name": "t__x", "server": "t", "arguments": {}})),
            (0.11, event("tool.approval_required", {"call_id": "c", "name": "t__x", "server": "t"})),
            (1.11, event("tool.approval_resolved", {"call_id": "c", "approved": True})),
            (1.15, event("tool.finished", {"call_id": "c", "name": "t__x", "server": "t"})),
            *answered(1.25),
        )
    )
    assert close(timeline.approval_wait_s, 1.0)
    assert close(timeline.tools_s, 0.05)
    assert close(timeline.tools_by_server["t"], 0.05)


def test_a_declined_call_runs_no_tool_and_the_model_answers_after_it() -> None:
    timeline = read_run_events(
        stream(
            STARTED,
            ASKED,
            (
                0.1,
                event("tool.approval_required", {"call_id": "c", "name": "calculator", "server": "builtin"}),
            ),
            (0.6, event("tool.approval_resolved", {"call_id": "c", "approved": False, "reason": "no"})),
            *answered(0.9),
        )
    )
    assert close(timeline.approval_wait_s, 0.5)
    assert (timeline.tools_s, timeline.tools_by_server, timeline.tool_calls) == (0.0, {}, 0)
    assert close(timeline.llm_s, 0.09 + 0.3)  # the second model call starts at the decision


def test_a_run_stopped_while_it_waits_waited_until_its_end() -> None:
    timeline = read_run_events(
        stream(
            STARTED,
            ASKED,
            (0.1, event("tool.approval_required", {"call_id": "c", "name": "x", "server": "s"})),
            (0.7, event("run.finished", {"status": "cancelled", "timings": {}})),
        )
    )
    assert close(timeline.approval_wait_s, 0.6)
    assert timeline.error == "run cancelled"


def record(total: float, llm: float, tools: dict[str, float], wait: float, approvals: int = 0) -> AgentRecord:
    return AgentRecord(
        index=0,
        phase="concurrency",
        level=1,
        intended_at=1.0,
        finished_at=1.0 + total,
        llm_s=llm,
        tools_s=sum(tools.values()),
        tools_by_server=tools,
        tool_calls_by_server=dict.fromkeys(tools, 2),
        approval_wait_s=wait,
        approvals=approvals,
    )


def test_chatstacks_own_time_leaves_out_the_users_and_each_servers() -> None:
    runs = [
        record(3.0, 0.5, {"builtin": 0.1, "time": 0.2}, 2.0, approvals=1),
        record(1.0, 0.6, {"builtin": 0.3}, 0.0),
    ]
    assert close(runs[0].overhead_s, 0.2)
    data = runs[0].to_json(origin=1.0)
    assert data["tools_by_server_ms"] == {"builtin": 100.0, "time": 200.0}
    assert (data["approval_wait_ms"], data["overhead_ms"], data["approvals"]) == (2000.0, 200.0, 1)

    row = summarize_agent_runs("concurrency", 1, runs, GeneratorHealth()).row
    assert row["approval_wait_ms_mean"] == 1000.0
    assert row["approvals"] == 1
    assert row["overhead_ms_mean"] == 150.0  # (200 + 100) / 2
    assert row["tools_ms_mean_builtin"] == 200.0
    assert row["tools_ms_mean_time"] == 100.0  # a run without the server counts as 0
    assert row["tool_call_ms_mean_builtin"] == 100.0  # 400 ms over 4 calls
    assert row["tool_call_ms_mean_time"] == 100.0
    no_tools = summarize_agent_runs("concurrency", 1, [record(1.0, 0.9, {}, 0.0)], GeneratorHealth()).row
    assert not any(key.startswith("tools_ms_mean_") for key in no_tools)
    assert not math.isnan(float(no_tools["approval_wait_ms_mean"]))
