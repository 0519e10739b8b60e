"""The search query syntax: parsed as users mean it, compiled so that no input changes the structure of
the FTS5 or tsquery expression, and accepted by both real databases whatever the input."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.search_query import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    InvalidQuery,
    Term,
    compile_fts5,
    compile_tsquery,
    parse,
)
from app.search_snippet import MAX_MARKED_CHARS, MAX_SNIPPET_CHARS, Markers, parse_marked
from tests.conftest import PG_ADMIN_URL

# What compiled queries may look like: quoted strings, an optional star, separators. Nothing else.
FTS5_SHAPE = re.compile(r'"(?:[^"]|"")*"\*?(?: "(?:[^"]|"")*"\*?)*')
TSQUERY_SHAPE = re.compile(r"'(?:[^'\\]|''|\\.)*'(?::\*)?(?: & '(?:[^'\\]|''|\\.)*'(?::\*)?)*", re.S)

# Queries users might type, plus the operators of both syntaxes and characters that break parsers.
nasty = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\"'*-&|!():<>^+\\ \t\n\x00\x1f\x7fNEARORANDNOT")),
        st.characters(codec="utf-8"),
    ),
    max_size=80,
)


def test_words_phrases_and_prefixes() -> None:
    assert parse('budget "trip to  Rome" ital*') == (
        Term("budget", phrase=False, prefix=False),
        Term("trip to Rome", phrase=True, prefix=False),
        Term("ital", phrase=False, prefix=True),
    )
    assert parse('"new yor"*') == (Term("new yor", phrase=True, prefix=True),)
    # An unclosed quote runs to the end; operators are words.
    assert parse('a OR "b NOT c') == (
        Term("a", phrase=False, prefix=False),
        Term("OR", phrase=False, prefix=False),
        Term("b NOT c", phrase=True, prefix=False),
    )
    assert compile_fts5("x OR yo*") == '"x" "OR" "yo"*'
    assert compile_tsquery("it's a\\b*") == "'it''s' & 'a\\\\b':*"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        '""',
        "***",
        "!!! ???",
        "\x00\x00",
        "a*",
        '"x"*',
        "w" * (MAX_QUERY_CHARS + 1),
        " ".join(f"w{i}" for i in range(MAX_TERMS + 1)),
        "x" * 201,
    ],
)
def test_nothing_sensible_to_search_is_a_422(query: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        parse(query)
    assert raised.value.status_code == 422
    assert raised.value.code == "invalid_query"


@given(nasty)
def test_compiled_queries_never_raise_anything_else_and_keep_their_shape(query: str) -> None:
    try:
        terms = parse(query)
    except InvalidQuery:
        return
    assert 1 <= len(terms) <= MAX_TERMS
    fts5, tsquery = compile_fts5(terms), compile_tsquery(terms)
    assert FTS5_SHAPE.fullmatch(fts5), fts5
    assert TSQUERY_SHAPE.fullmatch(tsquery), tsquery
    assert "\x00" not in fts5
    assert "\x00" not in tsquery
    # Every term is exactly one quoted string: user text never ends a string early.
    assert len(re.findall(r'"(?:[^"]|"")*"', fts5)) == len(terms)


@pytest.fixture(scope="module")
def fts5() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE t USING fts5(content, tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
    )
    db.executemany(
        "INSERT INTO t (content) VALUES (?)",
        [("the trip to Rome in May",), ("e-mail don't NEAR OR",), ("Café crème ½ 3.14",)],
    )
    yield db
    db.close()


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nasty)
def test_sqlite_accepts_every_compiled_query(fts5: sqlite3.Connection, query: str) -> None:
    try:
        match = compile_fts5(query)
    except InvalidQuery:
        return
    fts5.execute("SELECT rowid, snippet(t, 0, '[', ']', '…', 8) FROM t WHERE t MATCH ?", (match,)).fetchall()


def test_sqlite_finds_what_users_mean(fts5: sqlite3.Connection) -> None:
    def found(query: str) -> list[int]:
        rows = fts5.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY rowid", (compile_fts5(query),))
        return [r[0] for r in rows]

    assert found('"trip to rome"') == [1]
    assert found('"rome trip"') == []
    assert found("ro* trip") == [1]
    assert found("cafe") == [3]  # accents folded
    assert found("e-mail NEAR OR") == [2]  # operators are just words
    assert found("don't") == [2]


@dataclass
class Postgres:
    """A real PostgreSQL connection driven from synchronous tests (hypothesis runs them)."""

    loop: asyncio.AbstractEventLoop
    conn: asyncpg.Connection

    def fetchval(self, sql: str, *args: object) -> object:
        return self.loop.run_until_complete(self.conn.fetchval(sql, *args))


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    loop = asyncio.new_event_loop()
    db = Postgres(loop, loop.run_until_complete(asyncpg.connect(PG_ADMIN_URL)))
    yield db
    loop.run_until_complete(db.conn.close())
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nasty)
def test_postgres_accepts_every_compiled_query(postgres: Postgres, query: str) -> None:
    try:
        tsquery = compile_tsquery(query)
    except InvalidQuery:
        return
    postgres.fetchval(
        "SELECT to_tsvector('simple', 'the trip to Rome, e-mail don''t 3.14') @@ to_tsquery('simple', $1)",
        tsquery,
    )


def test_postgres_finds_what_users_mean(postgres: Postgres) -> None:
    def matches(query: str) -> bool:
        sql = "SELECT to_tsvector('simple', $1) @@ to_tsquery('simple', $2)"
        text = "The trip to Rome in May: e-mail don't 3.14 a\\b"
        return bool(postgres.fetchval(sql, text, compile_tsquery(query)))

    assert matches('"trip to rome"')
    assert not matches('"rome trip"')
    assert matches("ro* trip")
    assert matches("e-mail 3.14 don't")
    assert matches("a\\b")
    assert not matches("paris")


def test_snippet_markers_become_ranges() -> None:
    m = Markers.random()
    snippet = parse_marked(f"…the {m.open}trip{m.close} to\n\n {m.open}Rome{m.close}<b>", m)
    assert snippet.text == "…the trip to Rome<b>"
    assert [snippet.text[a:b] for a, b in snippet.highlights] == ["trip", "Rome"]


@given(st.text(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_snippets_from_any_text_are_bounded_and_ranges_valid(text: str, cuts: list[int]) -> None:
    m = Markers.random()
    marked = text
    for i, cut in enumerate(sorted(cuts, reverse=True)):
        marked = marked[:cut] + (m.open if i % 2 else m.close) + marked[cut:]
    snippet = parse_marked(marked, m)
    assert len(snippet.text) <= MAX_SNIPPET_CHARS
    assert m.open not in snippet.text
    assert m.close not in snippet.text
    previous = 0
    for start, end in snippet.highlights:
        assert previous <= start < end <= len(snippet.text)
        previous = end


def test_huge_snippets_are_read_only_so_far() -> None:
    m = Markers.random()
    snippet = parse_marked(" " * 10 * MAX_MARKED_CHARS + f"{m.open}late{m.close}", m)
    assert snippet.text == ""
    assert snippet.highlights == []
    long_word = parse_marked(f"{m.open}{'x' * 100_000}{m.close}", m)
    assert long_word.text == "x" * MAX_SNIPPET_CHARS
    assert long_word.highlights == [(0, MAX_SNIPPET_CHARS)]
