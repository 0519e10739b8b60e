"""Trimming the history to a context budget."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.trim import TRUNCATION_NOTE, estimate_tokens, trim_history


def turn(i: int, size: int = 400, tool: bool = False) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = [{"role": "user", "content": f"q{i} " + "x" * size}]
    if tool:
        call = {"id": f"c{i}", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "name": "calculator", "content": "r" * size},
        ]
    messages.append({"role": "assistant", "content": f"a{i} " + "y" * size})
    return messages


def total(history: list[dict[str, object]]) -> int:
    return sum(estimate_tokens(m) for m in history)


def test_history_that_fits_is_untouched() -> None:
    history = turn(0) + turn(1) + [{"role": "user", "content": "now"}]
    assert trim_history(history, 10_000) == history


def test_oldest_turns_go_first_and_tool_pairs_stay_together() -> None:
    history = turn(0, tool=True) + turn(1, tool=True) + turn(2) + [{"role": "user", "content": "latest"}]
    trimmed = trim_history(history, 450)
    assert trimmed[-1] == {"role": "user", "content": "latest"}
    assert total(trimmed) <= 450
    assert str(trimmed[0]["content"]).startswith("q")  # starts at a user turn
    call_ids = {c["id"] for m in trimmed for c in m.get("tool_calls", [])}  # type: ignore[attr-defined]
    result_ids = {m["tool_call_id"] for m in trimmed if m["role"] == "tool"}
    assert call_ids == result_ids


def test_current_turn_with_huge_tool_result_is_cut_in_the_middle() -> None:
    current = turn(9, size=40_000, tool=True)[:3]  # question, call, huge result (no answer yet)
    trimmed = trim_history(turn(0) + current, 2_000)
    assert total(trimmed) <= 2_000
    assert [m["role"] for m in trimmed] == ["user", "assistant", "tool"]
    assert str(trimmed[0]["content"]).startswith("q9 ")
    result = next(m for m in trimmed if m["role"] == "tool")
    assert TRUNCATION_NOTE in str(result["content"])
    assert str(result["content"]).startswith("rrr")
    assert str(result["content"]).endswith("rrr")


@given(st.lists(st.integers(0, 3000), min_size=1, max_size=12), st.integers(300, 5000))
def test_always_ends_with_the_question_and_fits(sizes: list[int], budget: int) -> None:
    history = [m for i, size in enumerate(sizes) for m in turn(i, size, tool=i % 2 == 0)]
    history.append({"role": "user", "content": "question " + "z" * 200})
    trimmed = trim_history(history, budget)
    assert trimmed[-1]["role"] == "user"
    assert str(trimmed[-1]["content"]).startswith("question")
    assert total(trimmed) <= budget
