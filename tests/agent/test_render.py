"""Rendering the canonical history for each tool mode."""

from __future__ import annotations

from agent.render import render_messages

HISTORY = [
    {"role": "user", "content": "What is 2+2?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "4"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "Thanks"},
]


def test_native_keeps_openai_tool_messages() -> None:
    out = render_messages("SYS", HISTORY, "native")
    assert out[0] == {"role": "system", "content": "SYS"}
    assert out[2]["content"] is None
    assert out[2]["tool_calls"][0]["id"] == "c1"
    assert out[3] == {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "4"}


def test_prompted_turns_tools_into_text_and_alternates_roles() -> None:
    out = render_messages("SYS", HISTORY, "prompted")
    roles = [m["role"] for m in out]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert (
        out[2]["content"]
        == '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
    )
    assert out[3]["content"].startswith('<tool_result name="calculator" call_id="c1">\n4')
    assert all("tool_calls" not in m for m in out)


def test_consecutive_user_turns_are_merged() -> None:
    out = render_messages("S", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "none")
    assert out[1:] == [{"role": "user", "content": "a\n\nb"}]
