"""Snippets of matching messages as plain text plus highlight ranges, never markup.

The database marks matches with markers made of a random nonce per query, so no stored message can
forge or break one; this module turns the marked text into what the API returns: `text` (whitespace
collapsed) and `highlights`, [start, end) offsets in Unicode code points into `text`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

MAX_SNIPPET_CHARS = 400
"""A snippet is a line in a result list; the database bounds it by words, this bounds it by characters."""
MAX_MARKED_CHARS = 4000
"""How much of the database's snippet is read: it is bounded by words, and one "word" or one run of
spaces in a stored message may be any length; this keeps the work per result small on the event loop."""


@dataclass(frozen=True, slots=True)
class Markers:
    open: str
    close: str

    @classmethod
    def random(cls) -> Markers:
        nonce = secrets.token_hex(8)
        return cls(open=f"\x02{nonce}[", close=f"]{nonce}\x03")


@dataclass(frozen=True, slots=True)
class Snippet:
    text: str
    highlights: list[tuple[int, int]]


def parse_marked(marked: str, markers: Markers) -> Snippet:
    """Plain text and highlight ranges from `marked`; unbalanced markers are dropped, never shown."""
    out: list[str] = []
    highlights: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    pending_space = False
    i, n = 0, min(len(marked), MAX_MARKED_CHARS)
    while i < n:
        if marked.startswith(markers.open, i):
            i += len(markers.open)
            if start is None:
                if pending_space and length:
                    out.append(" ")
                    length += 1
                pending_space = False
                start = length
            continue
        if marked.startswith(markers.close, i):
            i += len(markers.close)
            if start is not None and length > start:
                highlights.append((start, length))
            start = None
            continue
        ch = marked[i]
        i += 1
        if ch.isspace() or ch < " ":
            pending_space = True
            continue
        if length >= MAX_SNIPPET_CHARS:
            break
        if pending_space and length:
            out.append(" ")
            length += 1
        pending_space = False
        out.append(ch)
        length += 1
    if start is not None and length > start:
        highlights.append((start, length))
    return Snippet("".join(out), highlights)
