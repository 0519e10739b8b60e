"""Parsing tool calls out of text, and holding them back from the stream."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.prompted_tools import MalformedToolCall, StreamFilter, parse_tool_calls
from backends.local.tool_call_text import scan_tool_calls


def stream(text: str, size: int) -> tuple[str, str]:
    """Feed `text` in pieces of `size`; return (what was shown while streaming, the tail at the end)."""
    f = StreamFilter()
    shown = "".join(f.feed(text[i : i + size]) for i in range(0, len(text), size))
    return shown, f.finish()


def test_plain_text_has_no_calls() -> None:
    parsed = parse_tool_calls("The answer is 4.")
    assert parsed.text == "The answer is 4."
    assert parsed.tool_calls == []


def test_several_blocks() -> None:
    text = (
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>'
    )
    calls = parse_tool_calls(text).tool_calls
    assert [c.name for c in calls] == ["a", "b"]
    assert json.loads(calls[1].arguments) == {"x": 1}


def test_unclosed_block_at_end_still_parses() -> None:
    calls = parse_tool_calls('<tool_call>{"name": "a", "arguments": {"q": "x"}}').tool_calls
    assert calls[0].name == "a"


def test_json_that_is_not_a_call_is_answer_text() -> None:
    text = '{"city": "Paris", "population": 2100000}'
    assert parse_tool_calls(text).text == text
    fenced = '```json\n{"city": "Paris"}\n```'
    assert parse_tool_calls(fenced).tool_calls == []


@pytest.mark.parametrize(
    "bad",
    [
        "<tool_call>{oops</tool_call>",
        '<tool_call>{"arguments": {}}</tool_call>',
        '<tool_call>{"name": "a", "arguments": 3}',
    ],
)
def test_broken_blocks_raise(bad: str) -> None:
    with pytest.raises(MalformedToolCall):
        parse_tool_calls(bad)


@pytest.mark.parametrize("size", [1, 3, 7, 100])
def test_answer_text_streams_through(size: int) -> None:
    text = "Sure! Here is the answer: 42. <b>bold</b> and a < b."
    shown, tail = stream(text, size)
    assert shown + tail == text
    assert len(shown) >= len(text) - len("<tool_call>")


@pytest.mark.parametrize("size", [1, 4, 50])
def test_tool_call_is_never_shown(size: int) -> None:
    shown, tail = stream(
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "1+1"}}\n</tool_call>', size
    )
    assert shown == ""
    assert tail == ""


@pytest.mark.parametrize("size", [1, 5])
def test_text_before_a_call_is_shown_and_the_call_is_not(size: int) -> None:
    shown, tail = stream('Let me compute that.\n<tool_call>{"name": "c", "arguments": {}}</tool_call>', size)
    assert (shown + tail).strip() == "Let me compute that."


def test_bare_json_call_held_back_but_json_answer_released() -> None:
    assert stream('{"name": "c", "arguments": {}}', 2) == ("", "")
    shown, tail = stream('{"answer": 42}', 2)
    assert shown + tail == '{"answer": 42}'


def test_code_fence_of_another_language_streams_immediately() -> None:
    shown, tail = stream("```python\nprint('hi')\n```", 4)
    assert shown.startswith("```python\nprint")
    assert shown + tail == "```python\nprint('hi')\n```"


@given(st.text(alphabet=st.characters(blacklist_characters="<{[`"), max_size=200), st.integers(1, 20))
def test_text_without_markers_is_shown_whole(text: str, size: int) -> None:
    shown, tail = stream(text, size)
    assert shown + tail == text


CALL = '{"name": "calculator", "arguments": {"expression": "2+2"}}'


@pytest.mark.parametrize(
    "reply",
    [
        f"I will use the calculator.\n{CALL}",
        f"Let me compute.\n```json\n{CALL}\n```\nDone.",
        '{"type": "function", "function": ' + CALL + "}",
        f"[{CALL}]",
    ],
)
def test_the_agent_reads_calls_as_the_engine_parser_does(reply: str) -> None:
    engine = scan_tool_calls(reply, None, final=True)
    parsed = parse_tool_calls(reply)
    assert [(c.name, json.loads(c.arguments)) for c in parsed.tool_calls] == [
        (c.name, json.loads(c.arguments)) for c in engine.calls
    ]
    assert parsed.tool_calls
    assert parsed.text == reply[: engine.content_end].strip()


@pytest.mark.parametrize("size", [1, 4, 100])
def test_fenced_call_is_never_shown(size: int) -> None:
    assert stream(f"```json\n{CALL}\n```", size) == ("", "")
