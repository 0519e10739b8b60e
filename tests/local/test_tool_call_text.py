"""The tool-call text parser behind the `chatstack_qwen` vLLM plugin: whole replies and streams."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.local.tool_call_text import (
    MAX_PENDING_CHARS,
    ParsedToolCall,
    StreamingToolCallText,
    scan_tool_calls,
)

TOOLS = {"calculator", "web_search"}
CALC = ParsedToolCall("calculator", json.dumps({"expression": "1234*5678"}))
CALL_JSON = '{"name": "calculator", "arguments": {"expression": "1234*5678"}}'


def stream(text: str, pieces: list[int], tools: set[str] | None = TOOLS) -> tuple[str, list[ParsedToolCall]]:
    """Feed `text` cut at `pieces`, as vLLM would, and collect what comes out."""
    parser = StreamingToolCallText(tools)
    shown, calls, start = "", [], 0
    for cut in [*sorted(pieces), len(text)]:
        content, new_calls = parser.feed(text[start:cut])
        shown += content
        calls += new_calls
        start = max(start, cut)
    return shown + parser.finish(), calls


@pytest.mark.parametrize(
    ("text", "content"),
    [
        (CALL_JSON, ""),
        (f"  {CALL_JSON}\n", "  "),
        (f"<tool_call>\n{CALL_JSON}\n</tool_call>", ""),
        (f"<tool_call>\n{CALL_JSON}", ""),
        (f"```json\n{CALL_JSON}\n```", ""),
        (f"```\n{CALL_JSON}\n```", ""),
        (f"I will use the calculator.\n{CALL_JSON}", "I will use the calculator.\n"),
        (f"Let me compute.\n```json\n{CALL_JSON}\n```\nDone.", "Let me compute.\n"),
        (f"[{CALL_JSON}]", ""),
        ('{"name": "calculator", "arguments": "{\\"expression\\": \\"1234*5678\\"}"}', ""),
        ('{"name": "calculator", "parameters": {"expression": "1234*5678"}}', ""),
        ('{"type": "function", "function": ' + CALL_JSON + "}", ""),
    ],
)
def test_finds_a_call_in_every_form_small_models_write(text: str, content: str) -> None:
    scan = scan_tool_calls(text, TOOLS, final=True)
    assert scan.calls == [CALC]
    assert text[: scan.content_end] == content


def test_finds_several_calls() -> None:
    search = '{"name": "web_search", "arguments": {"query": "paris"}}'
    tagged = f"<tool_call>\n{CALL_JSON}\n</tool_call>\n<tool_call>\n{search}\n</tool_call>"
    for text in (tagged, f"{CALL_JSON}\n{search}", f"[{CALL_JSON}, {search}]"):
        names = [c.name for c in scan_tool_calls(text, TOOLS, final=True).calls]
        assert names == ["calculator", "web_search"]


def test_a_call_without_arguments_gets_an_empty_object() -> None:
    assert scan_tool_calls('{"name": "web_search"}', TOOLS, final=True).calls == [
        ParsedToolCall("web_search", "{}")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The capital of France is Paris.",
        '{"name": "delete_everything", "arguments": {}}',  # not an offered tool
        '{"name": "calculator", "arguments": {}, "extra": 1}',  # not the shape of a call
        '{"name": "calculator", "arguments": "not json"}',
        '{"name": "calculator", "arguments": [1, 2]}',
        'The JSON {"name": "calculator", "arguments": {}} mid-sentence is only an example.',
        "```python\nprint({'a': 1})\n```",
        'Config:\n```json\n{"name": "my-app", "version": "1.0"}\n```',
        "{not json at all}",
        '<tool_call>\n{"name": "calculator", "argum',  # cut off: shown as text rather than lost
        "",
    ],
)
def test_anything_else_is_text(text: str) -> None:
    scan = scan_tool_calls(text, TOOLS, final=True)
    assert scan.calls == []
    assert scan.content_end == len(text)


def test_without_offered_tools_nothing_is_a_call() -> None:
    assert scan_tool_calls(CALL_JSON, set(), final=True).calls == []
    assert scan_tool_calls(CALL_JSON, None, final=True).calls == [CALC]


def test_streaming_holds_back_only_what_may_become_a_call() -> None:
    parser = StreamingToolCallText(TOOLS)
    assert parser.feed("The answer") == ("The answer", [])
    assert parser.feed(" is:\n") == (" is:\n", [])
    assert parser.feed('{"name": "calc') == ("", [])
    assert parser.feed('ulator", "arguments": {"expression": "1234*5678"}}') == ("", [CALC])
    assert parser.feed("\nignored after the call") == ("", [])
    assert parser.finish() == ""


def test_streaming_releases_a_closing_fence_at_the_end() -> None:
    parser = StreamingToolCallText(TOOLS)
    shown = parser.feed("```python\nprint(1)\n")[0]
    shown += parser.feed("```")[0]
    assert shown == "```python\nprint(1)\n"
    assert parser.finish() == "```"


def test_streaming_releases_json_as_soon_as_it_cannot_be_a_call() -> None:
    parser = StreamingToolCallText(TOOLS)
    assert parser.feed('{"ci') == ("", [])
    assert parser.feed('ty": "Par') == ('{"city": "Par', [])
    assert parser.feed('is"}') == ('is"}', [])

    example = StreamingToolCallText(TOOLS)
    assert example.feed('```json\n{\n  "name": "squ') == ("", [])
    assert example.feed('are",') == ('```json\n{\n  "name": "square",', [])


def test_streaming_holds_back_a_bounded_amount() -> None:
    parser = StreamingToolCallText(TOOLS)
    opening = '{"name": "calculator", "arguments": {"expression": "'
    assert parser.feed(opening) == ("", [])
    shown, _ = parser.feed("1+" * MAX_PENDING_CHARS)
    assert shown.startswith(opening)


REPLIES = st.sampled_from(
    [
        CALL_JSON,
        f"Sure.\n```json\n{CALL_JSON}\n```",
        f"<tool_call>\n{CALL_JSON}\n</tool_call>",
        "Paris is the capital of France.",
        "```python\nx = {'a': 1}\n```\nThat is all.",
        '{"name": "unknown", "arguments": {}}\nThen text.',
        "Use `<tool_call>` tags <b>bold</b> and ``` fences.",
        "<tool_ca",
        '```json\n{\n  "name": "square",\n  "arguments": {"n": 2}\n}\n```\nDone.',
        '[1] A reference.\n{"name": "web_search", "arguments": {"query": "x"}}',
    ]
)


@given(reply=REPLIES, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_streaming_matches_the_whole_reply_however_it_is_cut(reply: str, cuts: list[int]) -> None:
    whole = scan_tool_calls(reply, TOOLS, final=True)
    shown, calls = stream(reply, [c for c in cuts if c <= len(reply)])
    assert calls == whole.calls
    assert shown == (reply[: whole.content_end] if whole.calls else reply)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<tool_call>{oops</tool_call>", "invalid JSON: Expecting property name enclosed in double quotes"),
        ("Let me see. <tool_call> then words", "invalid JSON: Expecting value"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'expected an object with a string "name"'),
        ('<tool_call>{"name": "calculator", "arguments": 3}', '"arguments" must be a JSON object'),
        ('<tool_call>{"name": "delete_everything", "arguments": {}}', "there is no tool named"),
        (f"<tool_call>{CALL_JSON}</tool_call>\n<tool_call>", "invalid JSON: Expecting value"),
    ],
)
def test_a_tag_that_is_not_a_call_is_reported_when_asked(text: str, reason: str) -> None:
    scan = scan_tool_calls(text, TOOLS, final=True, report_malformed=True)
    assert scan.malformed is not None
    assert scan.malformed.startswith(reason)
    assert scan.content_end == text.index("<tool_call>")
    assert scan_tool_calls(text, TOOLS, final=True).malformed is None  # the engine shows such text


def test_reporting_holds_everything_after_a_tag_and_reads_every_later_block() -> None:
    parser = StreamingToolCallText(TOOLS, report_malformed=True)
    assert parser.feed("Let me see. <tool_call> hmm") == ("Let me see. ", [])
    assert parser.malformed is not None
    search = '{"name": "web_search", "arguments": {"query": "x"}}'
    text = f"<tool_call>{CALL_JSON}</tool_call>\nand also\n<tool_call>{search}</tool_call>"
    names = [c.name for c in scan_tool_calls(text, TOOLS, final=True, report_malformed=True).calls]
    assert names == ["calculator", "web_search"]
    assert [c.name for c in scan_tool_calls(text, TOOLS, final=True).calls] == ["calculator"]
