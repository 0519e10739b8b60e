"""The app's side of approvals without servers: the history a paused run resumes from, the event log
that goes on numbering after a pause, and which offered tools ask first."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from app.approvals import tool_policy
from app.event_log import RunEventLog
from app.history import UNFINISHED_TOOL_RESULT, to_history
from tools.catalog import ToolEntry
from tools.tools_file import Approval


def row(role: str, content: str, **extra: Any) -> SimpleNamespace:
    fields = {"id": 0, "tool_calls": None, "tool_call_id": None, "name": None, **extra}
    return SimpleNamespace(role=role, content=content, **fields)


def call(call_id: str, name: str = "calculator") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


PAUSED = [
    row("user", "q", id=1),
    row("assistant", "", id=2, tool_calls=[call("asked"), call("auto", "web_search")]),
    row("tool", "found", id=3, tool_call_id="auto", name="web_search"),
]


def test_a_paused_runs_waiting_calls_stay_open_and_only_they() -> None:
    history = to_history(PAUSED, waiting={"asked"})  # type: ignore[arg-type]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[-1]["tool_call_id"] == "auto"
    # Without the pause (or for another call) a call without result is closed, as always.
    closed = to_history(PAUSED)  # type: ignore[arg-type]
    assert closed[-1] == {
        "role": "tool",
        "tool_call_id": "asked",
        "name": "calculator",
        "content": UNFINISHED_TOOL_RESULT,
    }


def test_a_waiting_call_is_closed_once_the_conversation_went_on() -> None:
    rows = [*PAUSED, row("user", "next", id=4)]
    history = to_history(rows, waiting={"asked"})  # type: ignore[arg-type]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "tool", "user"]


async def test_a_resumed_log_numbers_after_the_stored_events() -> None:
    log = RunEventLog("r", start_after=7)
    assert log.append("a", {}).id == 8
    assert log.append("b", {}).id == 9
    assert [e.id for e in log.unflushed()] == [8, 9]
    log.mark_flushed(8)
    assert [e.id for e in log.unflushed()] == [9]
    log.close()
    assert [e.id async for e in log.follow(0)] == [8, 9]
    assert [e.id async for e in log.follow(8)] == [9]


class Catalog:
    def __init__(self, **approvals: Approval) -> None:
        self._entries = {
            name: ToolEntry(SimpleNamespace(name=name), "builtin" if name != "clock" else "time", approval)  # type: ignore[arg-type]
            for name, approval in approvals.items()
        }

    def entries(self) -> list[ToolEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> ToolEntry | None:
        return self._entries.get(name)


def test_only_offered_ask_tools_ask() -> None:
    catalog = Catalog(calculator="ask", web_search="auto", clock="ask")
    policy = tool_policy(catalog, ["calculator", "web_search"])
    assert policy.ask == frozenset({"calculator"})
    assert policy.servers == {"calculator": "builtin", "web_search": "builtin"}
    assert tool_policy(catalog, ["clock"]).servers == {"clock": "time"}
