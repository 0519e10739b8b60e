"""The tools panel's and approval cards' actions (ui/handlers.py), against the in-memory API stand-in
of test_handlers.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.ui.test_handlers import NO_KEY, RESET, FakeApi
from tests.ui.test_markdown import parse
from ui.api_client import ApiError
from ui.api_models import RunEvent, ToolInfo
from ui.approval_card import ClickedDecision
from ui.handlers import Handlers
from ui.screen import Screen

TOOLS = [
    ToolInfo(name="calculator", server="builtin", description="Arithmetic."),
    ToolInfo(name="get_current_time", server="time", description="Time.", approval="ask"),
]


@pytest.fixture
def api() -> FakeApi:
    fake = FakeApi()
    fake.tool_items = list(TOOLS)
    return fake


@pytest.fixture
def handlers(api: FakeApi) -> Handlers:
    return Handlers(api, stream_window_s=0.001, clock=lambda: RESET - timedelta(hours=9))  # type: ignore[arg-type]


def checked(panel: str | None) -> set[str]:
    assert panel
    return {
        attrs["data-tool"] or ""
        for tag, attrs in parse(panel).elements
        if tag == "input" and "checked" in attrs
    }


async def test_a_new_chat_shows_every_tool_on(handlers: Handlers) -> None:
    screen = await handlers.new_chat(NO_KEY, None)
    assert checked(screen.tools_panel) == {"calculator", "get_current_time"}
    assert screen.draft_tools == ""


async def test_a_new_chat_keeps_the_choice_until_its_first_message(handlers: Handlers, api: FakeApi) -> None:
    chosen = await handlers.choose_tools(NO_KEY, "", ["calculator"])
    assert chosen.draft_tools == '["calculator"]'
    assert not [c for c in api.calls if c[0] == "set_tools"]  # there is no conversation yet

    screen = await handlers.send(NO_KEY, "hello", "", None, chosen.draft_tools)
    assert screen.conversation_id
    assert api.details[screen.conversation_id].tools == ["calculator"]
    assert checked(screen.tools_panel) == {"calculator"}
    assert screen.draft_tools == ""


async def test_a_toggle_in_a_conversation_is_saved(handlers: Handlers, api: FakeApi) -> None:
    cid = (await api.create_conversation()).id
    screen = await handlers.choose_tools(NO_KEY, cid, ["get_current_time"])
    assert ("set_tools", cid, ["get_current_time"]) in api.calls
    assert screen.tools_panel is None  # the page already shows the boxes as clicked
    assert screen.notice is None
    reopened = await handlers.open(NO_KEY, cid)
    assert checked(reopened.tools_panel) == {"get_current_time"}


async def test_a_refused_toggle_redraws_what_the_server_holds(handlers: Handlers, api: FakeApi) -> None:
    cid = (await api.create_conversation()).id
    screen = await handlers.choose_tools(NO_KEY, cid, ["calculator", "gone"])
    assert screen.notice == "no such tool"
    assert checked(screen.tools_panel) == {"calculator", "get_current_time"}  # still the default


async def test_a_selection_the_page_could_not_send_changes_nothing(handlers: Handlers, api: FakeApi) -> None:
    assert (await handlers.choose_tools(NO_KEY, "c1", None)).tools_panel is None
    assert api.calls == []


async def test_without_the_tools_endpoint_the_panel_is_hidden(handlers: Handlers, api: FakeApi) -> None:
    async def missing() -> None:
        raise ApiError(404, "not_found", "no such endpoint")

    api.tools = missing  # type: ignore[method-assign,assignment]
    assert (await handlers.new_chat(NO_KEY, None)).tools_panel == ""


async def test_approve_and_deny_go_to_the_followed_run(handlers: Handlers, api: FakeApi) -> None:
    assert await handlers.decide(NO_KEY, "r1", ClickedDecision("call_1", True)) == Screen()
    await handlers.decide(NO_KEY, "r1", ClickedDecision("call_2", False))
    # Nothing to decide: no run followed, or a click the page could not read.
    assert await handlers.decide(NO_KEY, "", ClickedDecision("call_3", True)) == Screen()
    assert await handlers.decide(NO_KEY, "r1", None) == Screen()
    assert [c for c in api.calls if c[0] == "decide"] == [
        ("decide", "r1", "call_1", True),
        ("decide", "r1", "call_2", False),
    ]


async def test_a_call_that_no_longer_waits_is_explained(handlers: Handlers, api: FakeApi) -> None:
    api.approval_error = ApiError(409, "approval_not_pending", "tool call c is not waiting for approval")
    screen = await handlers.decide(NO_KEY, "r1", ClickedDecision("c", True))
    assert screen.notice == "That tool call no longer waits: it was decided, timed out or stopped."
    api.approval_error = ApiError(404, "not_found", "no such run")
    assert (await handlers.decide(NO_KEY, "r1", ClickedDecision("c", True))).notice == "no such run"


async def test_following_a_run_shows_its_approval_card_then_the_mcp_step(
    handlers: Handlers, api: FakeApi
) -> None:
    cid = (await api.create_conversation()).id
    run_id = (await api.send_message(cid, "time?")).run_id
    api.scripts[run_id] = [
        RunEvent(1, "run.started", {}),
        RunEvent(
            2,
            "tool.approval_required",
            {"call_id": "t1", "name": "get_current_time", "server": "time", "arguments": {}},
        ),
        RunEvent(3, "tool.approval_resolved", {"call_id": "t1", "approved": True, "by": "local"}),
        RunEvent(4, "tool.started", {"call_id": "t1", "name": "get_current_time", "server": "time"}),
        RunEvent(
            5,
            "tool.finished",
            {"call_id": "t1", "name": "get_current_time", "output": "10:20", "server": "time"},
        ),
        RunEvent(6, "run.finished", {"status": "completed", "timings": {}}),
    ]
    screens = [s async for s in handlers.follow(NO_KEY, run_id, cid)]
    final = [s.chat for s in screens if s.chat is not None][-1]
    assert final is not None
    shown = ["".join(p["text"] for p in item["content"]) for item in final]
    assert any("Approved by local" in text for text in shown)
    assert [item.get("metadata", {}).get("title") for item in final if item.get("metadata")] == [
        "Used: get\\_current\\_time · time"
    ]


async def test_the_panel_is_redrawn_only_when_the_tools_change(handlers: Handlers, api: FakeApi) -> None:
    cid = (await api.create_conversation(tools=["get_current_time"])).id
    shown = (await handlers.open(NO_KEY, cid)).tools_panel or ""
    assert await handlers.refresh_tools(NO_KEY, cid, "", shown) == Screen()

    api.tool_items[1] = api.tool_items[1].model_copy(
        update={"status": "unavailable", "reason": "restarting (next try in 2 s)"}
    )
    redrawn = await handlers.refresh_tools(NO_KEY, cid, "", shown)
    assert redrawn.tools_panel
    assert "restarting (next try in 2 s)" in redrawn.tools_panel
    assert "data-refresh" in redrawn.tools_panel  # stays open if it was
    assert checked(redrawn.tools_panel) == {"get_current_time"}  # the conversation's own choice
    assert (await handlers.refresh_tools(NO_KEY, cid, "", redrawn.tools_panel)).tools_panel is None


async def test_a_new_chat_panel_is_redrawn_with_its_draft(handlers: Handlers, api: FakeApi) -> None:
    api.tool_items.append(ToolInfo(name="echo", server="late", description="Connected later."))
    redrawn = await handlers.refresh_tools(NO_KEY, "", '["echo"]', "")
    assert checked(redrawn.tools_panel) == {"echo"}
