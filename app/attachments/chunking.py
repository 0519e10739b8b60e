"""Splits a document's text into overlapping passages for full-text search, each with its location.

Sizes are in tokens estimated as the context trimming estimates them (`agent.trim.CHARS_PER_TOKEN`):
a passage the search returns must fit in the model's context next to a few others.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from agent.trim import CHARS_PER_TOKEN

CHUNK_TOKENS = 400
OVERLAP_TOKENS = 50
_BREAKS = ("\n\n", "\n", ". ", " ")


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    location: str
    """"page 3", "pages 3-4" (PDFs), "lines 10-52" (texts)."""
    text: str


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def split(
    text: str,
    page_offsets: Sequence[int] = (),
    *,
    chunk_tokens: int = CHUNK_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
) -> list[Chunk]:
    """Passages of about `chunk_tokens`, each repeating the last `overlap_tokens` of the one before
    (a sentence cut at a border is whole in one of them), broken at paragraph, line, sentence or word
    ends where one is near. With `page_offsets` (where each page starts) locations are pages."""
    size = chunk_tokens * CHARS_PER_TOKEN
    overlap = min(overlap_tokens * CHARS_PER_TOKEN, size // 2)
    chunks: list[Chunk] = []
    start = 0
    line = 1  # the line `start` is on
    while start < len(text):
        end = _break_before(text, start, start + size)
        piece = text[start:end]
        if piece.strip():
            where = _pages(page_offsets, start, end) if page_offsets else _lines(line, piece)
            chunks.append(Chunk(len(chunks), where, piece.strip()))
        if end >= len(text):
            break
        following = max(start + 1, _break_before(text, start, end - overlap, allow_short=True))
        line += text.count("\n", start, following)
        start = following
    return chunks


def _break_before(text: str, start: int, limit: int, *, allow_short: bool = False) -> int:
    """The best place to end a passage at or before `limit`: a break in its last quarter, if any."""
    if limit >= len(text):
        return len(text)
    floor = start if allow_short else start + (limit - start) * 3 // 4
    for mark in _BREAKS:
        at = text.rfind(mark, floor, limit)
        if at > start:
            return at + len(mark)
    return limit


def _pages(offsets: Sequence[int], start: int, end: int) -> str:
    first = bisect.bisect_right(offsets, start)
    last = bisect.bisect_right(offsets, max(start, end - 1))
    return f"page {first}" if first == last else f"pages {first}-{last}"


def _lines(first: int, piece: str) -> str:
    last = first + piece.rstrip("\n").count("\n")
    return f"line {first}" if first == last else f"lines {first}-{last}"
