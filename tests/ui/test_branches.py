"""The branch controls in the chat (ui/branches.py): what they draw, and what the page may send back."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.ui.test_markdown import assert_inert, parse
from ui.api_models import Message
from ui.branches import (
    MAX_EDIT_CHARS,
    MAX_MESSAGE_ID,
    EditQuestion,
    SwitchBranch,
    anchor_html,
    answer_branches_item,
    answer_has_alternatives,
    branch_action,
    inert_text,
    mark_answer,
    message_id_from,
    question_tools_html,
    switcher_html,
)
from ui.conversation_view import question_item
from ui.render import chat_item

HOSTILE = 'a <img src=x onerror="alert(1)"> & **bold** `code`\n\n<script>x()</script> é 🎉 "q" \'s\' &amp;'


_ANCHOR = re.compile(r'<div class="cs-anchor[ a-z0-9-]*"></div>\n\n')
_QUESTION_TOOLS = re.compile(r'\n\n<div class="cs-question-tools">.*?</div>$', re.DOTALL)


def without_branch_controls(html: str) -> str:
    """A message's HTML without the anchor and the pencil and switcher this module adds to it, for
    tests about what a message says (these controls are tested here)."""
    return _QUESTION_TOOLS.sub("", _ANCHOR.sub("", html))


def classes(html: str) -> list[list[str]]:
    """The class names of each element, in document order."""
    return [(attrs.get("class") or "").split() for _, attrs in parse(html).elements]


def target_of(button_classes: list[str]) -> str | None:
    """What the page's listener reads from a button: the rest of its `cs-to-` class name."""
    return next((name.removeprefix("cs-to-") for name in button_classes if name.startswith("cs-to-")), None)


def switch_targets(html: str) -> list[int | None]:
    """The message each arrow of a switcher shows (None: the arrow is off), via the page's route."""
    found = []
    for names in classes(html):
        if "cs-branch-go" in names:
            action = branch_action({"kind": "switch", "to": target_of(names)})
            found.append(action.message_id if isinstance(action, SwitchBranch) else None)
    return found


def position(html: str) -> str:
    match = re.search(r'<span class="cs-branch-position">([^<]*)</span>', html)
    assert match, html
    return match.group(1)


# inert text


@pytest.mark.parametrize(
    "text", [HOSTILE, "", "plain words 123", "line one\nline two\r\n\ttab", "\u202eevil"]
)
def test_inert_text_reads_back_exactly_and_carries_no_markup(text: str) -> None:
    html = inert_text(text)
    assert re.fullmatch(r"[A-Za-z0-9 &#;]*", html), html
    assert "".join(parse(html).text) == text
    assert parse(html).elements == []


def test_inert_text_leaves_no_blank_line_for_markdown_to_end_a_block() -> None:
    assert "\n" not in inert_text("a\n\nb")


# switchers


def test_a_message_without_alternatives_has_no_switcher() -> None:
    assert switcher_html(5, [], "answer") == ""
    assert switcher_html(5, [5], "answer") == ""


def test_a_message_not_among_its_siblings_has_no_switcher() -> None:
    assert switcher_html(9, [5, 6], "answer") == ""


@pytest.mark.parametrize(
    ("message_id", "shown", "targets"),
    [
        (10, "1 / 3", [None, 20]),
        (20, "2 / 3", [10, 30]),
        (30, "3 / 3", [20, None]),
    ],
)
def test_the_switcher_counts_from_one_and_each_arrow_names_its_neighbour(
    message_id: int, shown: str, targets: list[int | None]
) -> None:
    html = switcher_html(message_id, [10, 20, 30], "answer")
    assert position(html) == shown
    assert switch_targets(html) == targets


def test_an_arrow_at_the_end_is_disabled_and_names_nothing() -> None:
    html = switcher_html(1, [1, 2], "version")
    off = [attrs for tag, attrs in parse(html).elements if tag == "button" and "disabled" in attrs]
    assert len(off) == 1
    assert off[0]["title"] == "Previous version"
    assert target_of((off[0]["class"] or "").split()) is None


def test_two_alternatives_show_one_of_two() -> None:
    assert position(switcher_html(7, [7, 8], "answer")) == "1 / 2"
    assert position(switcher_html(8, [7, 8], "answer")) == "2 / 2"


# the question's tools


def test_a_question_offers_its_own_text_to_the_editor_inertly() -> None:
    html = question_tools_html(12, 11, [12], HOSTILE)
    found = parse(html)
    assert {tag for tag, _ in found.elements} == {"div", "button", "span"}
    assert "".join(found.text).endswith(HOSTILE)
    assert "<img" not in html
    assert "<script" not in html


def test_the_pencil_names_the_parent_an_edit_follows() -> None:
    pencils = [names for names in classes(question_tools_html(12, 11, [12], "q")) if "cs-edit" in names]
    assert pencils == [["cs-edit", "cs-parent-11"]]
    first = [names for names in classes(question_tools_html(3, None, [3], "q")) if "cs-edit" in names]
    assert first == [["cs-edit", "cs-parent-root"]]


def test_an_edited_question_shows_its_versions() -> None:
    html = question_tools_html(12, 11, [4, 12], "q")
    assert position(html) == "2 / 2"
    assert "Previous version" in html
    assert question_tools_html(12, 11, [12], "q").count("cs-branches") == 0


# answers


def test_a_regenerated_answer_gets_a_switcher_line_outside_its_text() -> None:
    item = answer_branches_item(40, [31, 40])
    assert item is not None
    assert item["role"] == "assistant"
    text = item["content"][0]["text"]  # type: ignore[index]
    assert "cs-meta" in text
    assert position(text) == "2 / 2"
    assert answer_branches_item(40, [40]) is None


def message(id_: int, role: Any, run_id: str | None, siblings: list[int]) -> Message:
    return Message(id=id_, role=role, content="x", run_id=run_id, siblings=siblings)


def test_whether_an_answer_has_alternatives_is_read_from_its_first_message() -> None:
    messages = [
        message(1, "user", "r1", [1]),
        message(2, "assistant", "r1", [2, 5]),
        message(3, "assistant", "r1", [3]),
    ]
    assert answer_has_alternatives(messages, "r1")
    assert not answer_has_alternatives(messages, "other")
    assert not answer_has_alternatives([message(2, "assistant", "r1", [2])], "r1")


def test_the_anchor_names_every_message_and_nothing_else() -> None:
    assert classes(anchor_html([3, 4])) == [["cs-anchor", "cs-m-3", "cs-m-4"]]
    assert anchor_html([]) == ""


def test_the_anchor_goes_on_the_first_text_not_a_closed_step() -> None:
    step = chat_item("assistant", "searching", {"title": "web search"})
    text = chat_item("assistant", "<p>answer</p>")
    items = [step, text]
    mark_answer(items, [7, 8])
    assert "cs-m-7" not in step["content"][0]["text"]  # type: ignore[index]
    assert text["content"][0]["text"].startswith('<div class="cs-anchor cs-m-7 cs-m-8"></div>\n\n<p>')  # type: ignore[index]


def test_an_answer_of_steps_only_is_marked_on_its_last_item() -> None:
    items = [chat_item("assistant", "one", {"title": "a"}), chat_item("assistant", "two", {"title": "b"})]
    mark_answer(items, [9])
    assert "cs-m-9" in items[1]["content"][0]["text"]  # type: ignore[index]
    assert "cs-m-9" not in items[0]["content"][0]["text"]  # type: ignore[index]
    mark_answer([], [9])  # nothing to mark: no error


# what the page sends


@pytest.mark.parametrize(("value", "expected"), [(12, 12), ("12", 12), (str(MAX_MESSAGE_ID), MAX_MESSAGE_ID)])
def test_message_ids_the_page_may_send(value: Any, expected: int) -> None:
    assert message_id_from(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -3, "0", "-3", "+7", " 7", "7 ", "7\n", "7_0", "0x10", "1e3", "7.0", 7.0,
        "\u0661\u0662",  # Arabic-Indic digits: int() reads them as 12
        "", "abc", "12abc", "cs-to-12", MAX_MESSAGE_ID + 1, str(MAX_MESSAGE_ID + 1), "9" * 400,
        [12], {"id": 1},
    ],
)  # fmt: skip
def test_anything_else_is_no_message_id(value: Any) -> None:
    assert message_id_from(value) is None


def test_a_switch_names_the_message_to_show() -> None:
    assert branch_action({"kind": "switch", "to": "42"}) == SwitchBranch(42)
    assert branch_action({"kind": "switch", "to": "42; drop"}) is None
    assert branch_action({"kind": "switch"}) is None


def test_an_edit_carries_its_text_and_the_parent_it_follows() -> None:
    assert branch_action({"kind": "edit", "parent": "11", "text": "new"}) == EditQuestion(11, "new")
    assert branch_action({"kind": "edit", "parent": None, "text": "new"}) == EditQuestion(None, "new")
    assert branch_action({"kind": "edit", "parent": "root", "text": "new"}) == EditQuestion(None, "new")
    assert branch_action({"kind": "edit", "text": "new"}) == EditQuestion(None, "new")


@pytest.mark.parametrize(
    "data",
    [
        None,
        "edit",
        ["edit"],
        {},
        {"kind": "delete", "to": "1"},
        {"kind": "edit", "parent": "11", "text": ""},
        {"kind": "edit", "parent": "11", "text": "  \n "},
        {"kind": "edit", "parent": "11", "text": 5},
        {"kind": "edit", "parent": "11"},
        {"kind": "edit", "parent": "eleven", "text": "x"},
        {"kind": "edit", "parent": "-1", "text": "x"},
        {"kind": "edit", "parent": "11", "text": "x" * (MAX_EDIT_CHARS + 1)},
    ],
)
def test_garbage_from_the_page_is_no_action(data: Any) -> None:
    assert branch_action(data) is None


def test_the_longest_edit_allowed_is_taken() -> None:
    action = branch_action({"kind": "edit", "parent": "1", "text": "x" * MAX_EDIT_CHARS})
    assert isinstance(action, EditQuestion)


def test_a_hostile_questions_controls_are_inert_and_route_nowhere_else() -> None:
    question = Message(id=12, role="user", content=HOSTILE, parent_id=11, siblings=[5, 12])
    html = "".join(part["text"] for part in question_item(question, "c1", False)["content"])  # type: ignore[index]
    assert_inert(without_branch_controls(html))
    found = parse(html)
    assert "".join(found.text).count("alert(1)") == 2  # the message and the editor's copy, as text
    routed = [name for _, attrs in found.elements for name in (attrs.get("class") or "").split()]
    assert {name for name in routed if name.startswith(("cs-to-", "cs-parent-", "cs-m-"))} == {
        "cs-to-5",
        "cs-parent-11",
        "cs-m-12",
    }
