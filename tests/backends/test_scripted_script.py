"""The scripted backend's conventions, which end-to-end tests and the emulator rely on."""

from __future__ import annotations

from backends.scripted.script import decide

TOOLS = [{"type": "function", "function": {"name": "calculator"}}]


def test_directive_calls_a_tool_natively_when_tools_are_offered() -> None:
    reply = decide({"messages": [{"role": "user", "content": "calc: 2+2"}], "tools": TOOLS})
    assert reply.tool_calls == [("calculator", {"expression": "2+2"})]
    assert not reply.prompted


def test_prompted_mode_is_detected_from_the_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "reply with <tool_call> blocks"},
        {"role": "user", "content": "search: x"},
    ]
    reply = decide({"messages": messages})
    assert reply.prompted
    assert reply.tool_calls == [("web_search", {"query": "x"})]


def test_answers_from_tool_results_native_and_prompted() -> None:
    native = decide(
        {
            "messages": [{"role": "user", "content": "calc: 2+2"}, {"role": "tool", "content": "4"}],
            "tools": TOOLS,
        }
    )
    assert native.text == "The result is 4."
    prompted = decide(
        {
            "messages": [
                {"role": "user", "content": "calc: 2+2"},
                {"role": "user", "content": '<tool_result name="c">\n4\n</tool_result>'},
            ]
        }
    )
    assert prompted.text == "The result is 4."


def test_plain_and_token_replies() -> None:
    assert decide({"messages": [{"role": "user", "content": "hi"}]}).text == "Echo: hi"
    reply = decide({"messages": [{"role": "user", "content": "tokens: 5\ndelay: 7"}]})
    assert reply.tokens() == ["the", " quick", " brown", " fox", " jumps"]
    assert reply.delay_ms == 7


def test_without_tools_the_directive_is_just_text() -> None:
    assert decide({"messages": [{"role": "user", "content": "calc: 2+2"}]}).tool_calls == []
