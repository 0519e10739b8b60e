"""Fit the conversation into the backend's context window: oldest turns go first.

Token counts are estimated (about four characters a token, the usual rule for English and code) so
that no tokenizer is needed; the reserve for the answer absorbs the estimate's error.
"""

from __future__ import annotations

import json

from agent.answer_step import current_turn_start
from agent.messages import ChatMessage

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
TRUNCATION_NOTE = "\n[… truncated to fit the model's context …]\n"
MIN_KEEP_CHARS = 200


def estimate_tokens(message: ChatMessage) -> int:
    size = len(str(message.get("content") or ""))
    if message.get("tool_calls"):
        size += len(json.dumps(message["tool_calls"]))
    return size // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS


def _turns(history: list[ChatMessage]) -> list[list[ChatMessage]]:
    turns: list[list[ChatMessage]] = []
    for message in history:
        if message["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def trim_history(history: list[ChatMessage], budget_tokens: int) -> list[ChatMessage]:
    """The most recent history that fits `budget_tokens`.

    Whole earlier turns are dropped, oldest first, so a tool call never loses its result. The current
    turn (the user's question and this run's tool results) is always kept; if it alone is too big,
    its longest contents are cut in the middle.
    """
    start = current_turn_start(history)
    current = [dict(m) for m in history[start:]]
    earlier = _turns(history[:start])
    total = sum(estimate_tokens(m) for m in current) + sum(estimate_tokens(m) for t in earlier for m in t)
    while earlier and total > budget_tokens:
        total -= sum(estimate_tokens(m) for m in earlier.pop(0))
    while total > budget_tokens:
        longest = max(current, key=lambda m: len(str(m.get("content") or "")))
        content = str(longest.get("content") or "")
        excess_chars = (total - budget_tokens) * CHARS_PER_TOKEN
        keep = max(MIN_KEEP_CHARS, len(content) - excess_chars - len(TRUNCATION_NOTE))
        if keep + len(TRUNCATION_NOTE) >= len(content):
            break  # everything is as short as it sensibly gets
        longest["content"] = (
            content[: keep // 2] + TRUNCATION_NOTE + content[len(content) - (keep - keep // 2) :]
        )
        total = sum(estimate_tokens(m) for m in current)
    return [m for turn in earlier for m in turn] + current
