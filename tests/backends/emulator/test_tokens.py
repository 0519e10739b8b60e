"""Prompt token estimates and deterministic filler text."""

from __future__ import annotations

from backends.emulator.loadgen import prompt_with_tokens
from backends.emulator.tokens import FillerText, count_prompt_tokens


def test_prompt_tokens_are_about_four_characters_each_plus_the_template() -> None:
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 400}]
    assert count_prompt_tokens(messages) == 110 + 2 * 4


def test_content_parts_and_tools_count_too() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "z" * 80}]}]
    assert count_prompt_tokens(parts) == 24
    tools = [{"type": "function", "function": {"name": "calculator", "description": "d" * 200}}]
    assert count_prompt_tokens(parts, tools) > 24 + 50


def test_load_generator_prompts_count_as_requested() -> None:
    for tokens in (10, 299, 1500):
        assert count_prompt_tokens([{"role": "user", "content": prompt_with_tokens(tokens)}]) == tokens


def test_filler_is_deterministic_per_seed_and_prompt() -> None:
    same = FillerText(7, "hello").text(50), FillerText(7, "hello").text(50)
    assert same[0] == same[1]
    assert FillerText(8, "hello").text(50) != same[0]
    assert FillerText(7, "other").text(50) != same[0]


def test_filler_tokens_are_single_words_with_a_leading_space() -> None:
    filler = FillerText(0, "p")
    words = [filler.word(i) for i in range(300)]
    assert all(w.startswith(" ") and " " not in w[1:] for w in words)
    assert len(set(words)) > 50
