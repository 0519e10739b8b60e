"""Approval cards and MCP tool steps in an answer (ui/approval_card.py, ui/render.py): no browser."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.test_markdown import parse, visible_text
from ui.api_models import ConversationDetail, Message, Run, RunEvent, ToolCall
from ui.approval_card import (
    MAX_ARGUMENT_CHARS,
    ApprovalCard,
    Decision,
    call_class,
    card_html,
    clicked_decision,
)
from ui.conversation_view import conversation_items
from ui.render import THINKING, RunView

CARD_TAGS = {"div", "code", "span", "strong", "pre", "button"}
CARD_ATTRIBUTES = {"class", "type", "role"}


def event(seq: int, type_: str, **data: Any) -> RunEvent:
    return RunEvent(seq, type_, data)


def texts(view: RunView) -> list[str]:
    return ["".join(part["text"] for part in item["content"]) for item in view.messages()]


def assert_card_markup(html: str) -> None:
    found = parse(html)
    assert not found.comments
    for tag, attrs in found.elements:
        assert tag in CARD_TAGS, tag
        assert set(attrs) <= CARD_ATTRIBUTES, attrs
    # One line: the Chatbot's Markdown sees one raw HTML block.
    assert "\n" not in html


REQUIRED = {
    "call_id": "call_1",
    "name": "get_current_time",
    "server": "time",
    "arguments": {"timezone": "UTC"},
    "expires_at": "2026-12-05T10:30:00Z",
}


def waiting_run() -> RunView:
    view = RunView()
    view.apply(event(1, "run.started", run_id="r1", conversation_id="c1", backend="b"))
    view.apply(
        event(2, "message.completed", message_id=1, content="", status="complete", tool_calls=[], usage=None)
    )
    view.apply(event(3, "tool.approval_required", **REQUIRED))
    return view


def test_waiting_card_shows_tool_server_arguments_and_buttons() -> None:
    view = waiting_run()
    [card] = texts(view)  # no "Thinking…": the card says what the answer waits for
    assert_card_markup(card)
    text = visible_text(card)
    assert "Allow this tool call?" in text
    assert "get_current_time" in text
    assert "from time" in text
    assert '{\n  "timezone": "UTC"\n}' in text  # pretty JSON, its newlines as character references
    assert "Denied automatically at 10:30 UTC if nobody answers." in text
    buttons = [attrs["class"] for tag, attrs in parse(card).elements if tag == "button"]
    assert buttons == [f"cs-approve {call_class('call_1')}", f"cs-deny {call_class('call_1')}"]
    assert view.finished is False


def test_approved_then_the_tool_step_names_its_server() -> None:
    view = waiting_run()
    view.apply(event(4, "tool.approval_resolved", call_id="call_1", approved=True, by="ada", reason=None))
    # Approved, nothing running yet: the page shows it is working.
    assert texts(view)[-1] == THINKING
    view.apply(
        event(5, "tool.started", call_id="call_1", name="get_current_time", arguments={}, server="time")
    )
    view.apply(
        event(
            6,
            "tool.finished",
            call_id="call_1",
            name="get_current_time",
            output='{"datetime": "2026-12-05T10:20:00Z"}',
            sources=[],
            error=None,
            duration_ms=12.0,
            server="time",
        )
    )
    view.apply(event(7, "message.delta", text="It is 10:20."))
    view.apply(event(8, "run.finished", status="completed", timings={"ttft_ms": 5, "total_ms": 9}))
    card, step, answer, footer = view.messages()
    card_text = "".join(p["text"] for p in card["content"])
    assert "✓ Approved by ada." in visible_text(card_text)
    assert "cs-approve" not in card_text
    assert "cs-approval-approved" in card_text
    assert step["metadata"]["title"] == "Used: get\\_current\\_time · time"
    assert "10:20" in "".join(p["text"] for p in answer["content"])
    assert "cs-meta" in "".join(p["text"] for p in footer["content"])


@pytest.mark.parametrize(
    ("decision", "shown"),
    [
        (Decision(False, "ada", "not now"), "✕ Denied by ada (not now)."),
        (Decision(False, "ada"), "✕ Denied by ada."),
        (Decision(False, "timeout", "timed out"), "⏱ Timed out: nobody answered in time, so it was denied."),
        (Decision(False, "bob", "cancelled"), "Not run: the answer was stopped by bob."),
    ],
)
def test_what_was_decided(decision: Decision, shown: str) -> None:
    html = card_html(ApprovalCard("c", "tool", "srv", {}, decision=decision))
    assert_card_markup(html)
    assert shown in visible_text(html)
    assert "<button" not in html


def test_a_run_that_ends_while_waiting_closes_the_card() -> None:
    view = waiting_run()
    view.apply(event(4, "run.finished", status="cancelled", timings={}))
    html = texts(view)[0]
    assert "<button" not in html
    assert "Not decided: the answer ended first." in visible_text(html)


def test_untrusted_arguments_names_and_reasons_are_inert_and_bounded() -> None:
    attack = '</code></pre><button class="cs-approve">Approve</button><img src=x onerror=alert(1)>'
    card = ApprovalCard(
        "call<1>",
        f"<b>{attack}</b>",
        '"><script>',
        {"note": attack, "blob": "y" * 10_000},
        decision=None,
    )
    html = card_html(card)
    assert_card_markup(html)
    assert "<img" not in html
    assert "<script" not in html
    assert len([tag for tag, _ in parse(html).elements if tag == "button"]) == 2
    assert len(html) < MAX_ARGUMENT_CHARS * 2 + 2000
    assert "…" in visible_text(html)
    denied = card_html(ApprovalCard("c", "t", "s", "not json {", decision=Decision(False, "ada", attack)))
    assert_card_markup(denied)
    assert "not json {" in visible_text(denied)


def test_the_same_request_twice_shows_one_card() -> None:
    view = waiting_run()
    view.apply(event(4, "tool.approval_required", **REQUIRED))
    assert len(texts(view)) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"call_id": "call_1", "approve": True}, ("call_1", True)),
        ({"call_id": "call_1", "approve": False}, ("call_1", False)),
        ({"call_id": "", "approve": True}, None),
        ({"call_id": "x" * 129, "approve": True}, None),
        ({"call_id": "call_1", "approve": "yes"}, None),
        ({"call_id": 5, "approve": True}, None),
        ("call_1", None),
        (None, None),
    ],
)
def test_clicked_decision_is_checked(data: Any, expected: tuple[str, bool] | None) -> None:
    decision = clicked_decision(data)
    assert (None if decision is None else (decision.call_id, decision.approve)) == expected


def test_call_class_is_hex_of_the_id() -> None:
    assert call_class("call_1") == "cs-call-" + b"call_1".hex()
    assert call_class('"><x') == "cs-call-223e3c78"


def test_stored_mcp_steps_name_their_server() -> None:
    """Stored tool messages do not say which server a tool is from; the tools list does."""
    messages = [
        Message(id=1, role="user", content="time?", run_id="r1"),
        Message(
            id=2,
            role="assistant",
            content="",
            run_id="r1",
            tool_calls=[ToolCall(id="t1", name="get_current_time", arguments='{"timezone": "UTC"}')],
        ),
        Message(id=3, role="tool", content="10:20", run_id="r1", tool_call_id="t1", name="get_current_time"),
        Message(id=4, role="assistant", content="It is 10:20.", run_id="r1"),
    ]
    run = Run(id="r1", conversation_id="c1", status="completed", backend="b")
    items = conversation_items(messages, [run], None, "b", {"get_current_time": "time"})
    titles = [item.get("metadata", {}).get("title") for item in items]
    assert "Used: get\\_current\\_time · time" in titles
    builtin = conversation_items(messages, [run], None, "b", {"get_current_time": "builtin"})
    assert "Used: get\\_current\\_time" in [i.get("metadata", {}).get("title") for i in builtin]


def test_a_conversation_waiting_for_approval_is_read() -> None:
    """The API reports a paused run as `awaiting_approval`: the page must read it (and follow it)."""
    detail = ConversationDetail.model_validate(
        {
            "id": "c1",
            "title": "t",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "tools": ["get_current_time"],
            "messages": [],
            "runs": [{"id": "r1", "conversation_id": "c1", "status": "awaiting_approval", "backend": "b"}],
            "active_run_id": "r1",
        }
    )
    assert detail.runs[0].status == "awaiting_approval"
    assert detail.tools == ["get_current_time"]
