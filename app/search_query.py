"""The full-text query syntax users type, compiled safely for SQLite FTS5 and PostgreSQL.

Syntax (what search boxes usually accept):

    words            every word must occur, in any order (AND)
    "a phrase"       the words in this order, next to each other
    prefix*          words starting with `prefix` (also after a phrase: "new yor"*)

Everything else is text: FTS5 and tsquery operators (AND, OR, NOT, NEAR, -, &, |, !, <->, :, parentheses)
typed by a user are searched for as words, never interpreted. Each term is emitted as one quoted string
(FTS5) or one quoted lexeme (tsquery), so its content cannot change the structure of the compiled query;
the database's own tokenizer then splits it exactly as it split the indexed text ("e-mail" finds what
"e-mail" was indexed as). A query with nothing to search for raises `InvalidQuery` (422): garbage input
never reaches the database as a syntax error.

    >>> compile_fts5('budget "trip to Rome" ital*')
    '"budget" "trip to Rome" "ital"*'
    >>> compile_tsquery('budget "trip to Rome" ital*')
    "'budget' & 'trip to Rome' & 'ital':*"
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import InvalidRequest

MAX_QUERY_CHARS = 500
MAX_TERMS = 16
MAX_TERM_CHARS = 200
"""Longer words are not words; PostgreSQL also refuses lexemes over 2047 bytes with an error."""
MIN_PREFIX_CHARS = 2
"""A one-letter prefix matches most of the index: slow and useless."""


class InvalidQuery(InvalidRequest):
    """The query cannot be searched for (empty, too long, too many terms): a 422 `invalid_query`."""

    code = "invalid_query"


@dataclass(frozen=True, slots=True)
class Term:
    text: str
    """The user's word or phrase, with control characters replaced by spaces; never empty."""
    phrase: bool
    prefix: bool


def _clean(query: str) -> str:
    # Control characters (NUL above all: FTS5 reads a string only up to it) separate words anyway.
    return "".join(" " if (ch < " " or "\x7f" <= ch <= "\x9f") else ch for ch in query)


def _searchable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def parse(query: str) -> tuple[Term, ...]:
    """The terms of `query`; raises `InvalidQuery` when there is nothing (sensible) to search for."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    text = _clean(query)
    terms: list[Term] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end  # an unclosed quote runs to the end, as users mean it
            body, i = text[i + 1 : end], end + 1
            prefix = i < n and text[i] == "*"
            while i < n and text[i] == "*":
                i += 1
            terms.append(Term(" ".join(body.split()), phrase=True, prefix=prefix))
            continue
        start = i
        while i < n and not text[i].isspace() and text[i] != '"':
            i += 1
        word = text[start:i]
        stripped = word.rstrip("*")
        terms.append(Term(stripped, phrase=False, prefix=stripped != word))
    kept = [t for t in terms if _searchable(t.text)]
    if not kept:
        raise InvalidQuery("the query has no words to search for")
    if len(kept) > MAX_TERMS:
        raise InvalidQuery(f"the query has {len(kept)} words or phrases; the limit is {MAX_TERMS}")
    for term in kept:
        if len(term.text) > MAX_TERM_CHARS:
            raise InvalidQuery(f"a word or phrase is longer than {MAX_TERM_CHARS} characters")
        if term.prefix and sum(ch.isalnum() for ch in term.text.split()[-1]) < MIN_PREFIX_CHARS:
            raise InvalidQuery(f"a prefix* needs at least {MIN_PREFIX_CHARS} letters or digits")
    return tuple(kept)


def _terms(query: str | tuple[Term, ...]) -> tuple[Term, ...]:
    return parse(query) if isinstance(query, str) else query


def compile_fts5(query: str | tuple[Term, ...]) -> str:
    """An FTS5 MATCH expression: the terms as quoted strings (phrases), implicitly ANDed."""
    parts = []
    for term in _terms(query):
        quoted = '"' + term.text.replace('"', '""') + '"'
        parts.append(quoted + "*" if term.prefix else quoted)
    return " ".join(parts)


def _lexeme(text: str) -> str:
    # Inside a tsquery quoted lexeme a backslash escapes the next character and '' is a quote.
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def compile_tsquery(query: str | tuple[Term, ...]) -> str:
    """A `to_tsquery` expression: each term one quoted lexeme, ANDed with `&`.

    `to_tsquery` runs a quoted lexeme through the configuration's parser, so several words in one become
    a `<->` phrase and `:*` marks the prefix; a term that normalizes to nothing is dropped (with a
    NOTICE), never an error.
    """
    parts = []
    for term in _terms(query):
        lexeme = _lexeme(term.text)
        parts.append(lexeme + ":*" if term.prefix else lexeme)
    return " & ".join(parts)
