"""What the emulator answers: the scripted directive convention, cut into decode steps."""

from __future__ import annotations

import json
from typing import Any

from backends.emulator.reply import plan_output
from backends.scripted.script import prompted_call_text

PROMPTED_SYSTEM = "You can call tools. Answer with <tool_call>{...}</tool_call> blocks."
TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def deltas(plan: Any) -> list[dict[str, Any]]:
    return [json.loads(plan.delta_json(i)) for i in range(plan.count)]


def test_a_message_without_directives_gets_exactly_max_tokens_of_filler() -> None:
    plan = plan_output(user("Tell me about GPUs"), 37, seed=0, prompt_key="k")
    assert (plan.count, plan.finish_reason) == (37, "length")
    text = "".join(d["content"] for d in deltas(plan))
    assert text == plan.message()["content"]
    assert len(text.split()) == 37


def test_calc_with_tools_streams_a_native_calculator_call() -> None:
    plan = plan_output(user("calc: 2+2", tools=TOOLS), 512, seed=0, prompt_key="k")
    assert plan.finish_reason == "tool_calls"
    calls = [d["tool_calls"][0] for d in deltas(plan)]
    assert calls[0]["function"]["name"] == "calculator"
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"expression": "2+2"}
    assert plan.count == len(calls) > 3
    assert plan.message()["tool_calls"][0]["function"]["name"] == "calculator"


def test_calc_in_prompted_mode_writes_a_tool_call_block() -> None:
    body = {
        "messages": [{"role": "system", "content": PROMPTED_SYSTEM}, {"role": "user", "content": "calc: 2+2"}]
    }
    plan = plan_output(body, 512, seed=0, prompt_key="k")
    text = "".join(d["content"] for d in deltas(plan))
    assert text == prompted_call_text([("calculator", {"expression": "2+2"})])
    assert plan.message()["content"] == text


def test_after_a_tool_result_it_answers_from_the_result() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "calc: 2+2"},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "content": "4"},
        ],
        "tools": TOOLS,
    }
    plan = plan_output(body, 512, seed=0, prompt_key="k")
    assert plan.finish_reason == "stop"
    assert "".join(d["content"] for d in deltas(plan)) == "The result is 4."


def test_scripted_text_is_cut_at_max_tokens() -> None:
    plan = plan_output(user("tokens: 10"), 4, seed=0, prompt_key="k")
    assert (plan.count, plan.finish_reason) == (4, "length")


def test_failure_directives_are_carried_through() -> None:
    assert plan_output(user("fail: before"), 8, seed=0, prompt_key="k").failure == "before"
    assert plan_output(user("fail: midstream"), 8, seed=0, prompt_key="k").failure == "midstream"
