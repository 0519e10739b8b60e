"""A prompt to send, with the lengths the dataset expects (the server's usage is what gets recorded)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Prompt:
    id: str
    text: str
    prompt_tokens: int | None = None
    """Expected prompt length as the dataset's tokenizer counted it (None when unknown)."""
    output_tokens: int | None = None
    """The `max_tokens` to ask for (ShareGPT: the recorded reply's length), None for the server's default."""
