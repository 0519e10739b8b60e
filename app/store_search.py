"""Full-text search over a user's messages: the SQL for SQLite FTS5 and PostgreSQL, used by `Store`.

Both databases find the matches through their index (FTS5 MATCH; `@@` on the GIN-indexed tsvector),
keep the user's own, rank them (bm25; ts_rank normalized by length) or take the newest, and build
snippets for the requested page only: snippets re-read the text, which must not happen per match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Integer, String, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import UTCDateTime
from app.db.search_schema import FTS_TABLE, TS_CONFIG, TSVECTOR_COLUMN
from app.search_query import Term, compile_fts5, compile_tsquery
from app.search_snippet import Markers, Snippet, parse_marked

SearchOrder = Literal["rank", "recent"]

SNIPPET_TOKENS = 24
"""FTS5 snippet length in words (its maximum is 64)."""

# One pass over the matches finds the page and counts them: the join that keeps the user's own is the
# costly part (a lookup per match), so it runs once. The page then goes back to the index row by row
# (CROSS JOIN keeps that order) for snippets.
_SQLITE_PAGE = f"""
WITH hits AS MATERIALIZED (
    SELECT {FTS_TABLE}.rowid AS id, {{score}} AS score
    FROM {FTS_TABLE}
    JOIN messages m ON m.id = {FTS_TABLE}.rowid
    JOIN conversations c ON c.id = m.conversation_id
    WHERE {FTS_TABLE} MATCH :match AND c.user_id = :user_id
),
page AS (
    SELECT id, score, count(*) OVER () AS total FROM hits ORDER BY {{order}} LIMIT :limit OFFSET :offset
)
SELECT page.id AS message_id, m.conversation_id, c.title AS conversation_title, m.role, m.created_at,
       snippet({FTS_TABLE}, 0, :open, :close, '…', {SNIPPET_TOKENS}) AS marked, page.score, page.total
FROM page
CROSS JOIN {FTS_TABLE}
JOIN messages m ON m.id = page.id
JOIN conversations c ON c.id = m.conversation_id
WHERE {FTS_TABLE} MATCH :match AND {FTS_TABLE}.rowid = page.id
ORDER BY {{outer_order}}
"""
# bm25() is lower for better matches; ranking is skipped when the newest come first.
_SQLITE_SCORE = {"rank": f"-bm25({FTS_TABLE})", "recent": "0.0"}
_SQLITE_COUNT = f"""
SELECT count(*) FROM {FTS_TABLE}
JOIN messages m ON m.id = {FTS_TABLE}.rowid
JOIN conversations c ON c.id = m.conversation_id
WHERE {FTS_TABLE} MATCH :match AND c.user_id = :user_id
"""

# ts_headline parses the whole text of a message: only the page's rows get one.
_PG_PAGE = f"""
WITH q AS (SELECT to_tsquery('{TS_CONFIG}', :tsquery) AS query),
hits AS MATERIALIZED (
    SELECT m.id, {{score}} AS score
    FROM q, messages m
    JOIN conversations c ON c.id = m.conversation_id
    WHERE m.{TSVECTOR_COLUMN} @@ q.query AND c.user_id = :user_id
),
page AS (
    SELECT id, score, count(*) OVER () AS total FROM hits ORDER BY {{order}} LIMIT :limit OFFSET :offset
)
SELECT m.id AS message_id, m.conversation_id, c.title AS conversation_title, m.role, m.created_at,
       ts_headline('{TS_CONFIG}', m.content, q.query, :options) AS marked, page.score, page.total
FROM q, page
JOIN messages m ON m.id = page.id
JOIN conversations c ON c.id = m.conversation_id
ORDER BY {{outer_order}}
"""
# Normalization 1 divides by 1 + log(length), so long answers do not win by size alone (as bm25).
_PG_SCORE = {"rank": f"ts_rank(m.{TSVECTOR_COLUMN}, q.query, 1)", "recent": "0.0"}
_PG_COUNT = f"""
SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
WHERE m.{TSVECTOR_COLUMN} @@ to_tsquery('{TS_CONFIG}', :tsquery) AND c.user_id = :user_id
"""
_ORDER = {"rank": "score DESC, id DESC", "recent": "id DESC"}
_OUTER_ORDER = {"rank": "page.score DESC, page.id DESC", "recent": "page.id DESC"}


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: int
    conversation_id: str
    conversation_title: str
    role: str
    created_at: datetime
    snippet: Snippet
    score: float
    """Higher is better, comparable only within one result list."""


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[SearchHit]
    total: int


def _headline_options(markers: Markers) -> str:
    # Markers are hex and control characters only: nothing in them needs quoting beyond the quotes.
    return (
        f'StartSel="{markers.open}", StopSel="{markers.close}", MaxWords=24, MinWords=10, '
        'MaxFragments=2, FragmentDelimiter=" … "'
    )


def _typed(sql: str) -> Any:
    return text(sql).columns(
        message_id=Integer(),
        conversation_id=String(),
        conversation_title=String(),
        role=String(),
        created_at=UTCDateTime(),
        marked=String(),
        total=Integer(),
    )


async def search_messages(
    session: AsyncSession,
    user_id: str,
    terms: Sequence[Term],
    *,
    order: SearchOrder,
    limit: int,
    offset: int,
) -> SearchPage:
    """One page of the user's user and assistant messages that match `terms`, and how many match."""
    markers = Markers.random()
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {"user_id": user_id, "limit": limit, "offset": offset}
    if dialect == "postgresql":
        params |= {"tsquery": compile_tsquery(tuple(terms)), "options": _headline_options(markers)}
        page_sql = _PG_PAGE.format(
            score=_PG_SCORE[order], order=_ORDER[order], outer_order=_OUTER_ORDER[order]
        )
        count_sql = _PG_COUNT
    else:
        params |= {"match": compile_fts5(tuple(terms)), "open": markers.open, "close": markers.close}
        page_sql = _SQLITE_PAGE.format(
            score=_SQLITE_SCORE[order], order=_ORDER[order], outer_order=_OUTER_ORDER[order]
        )
        count_sql = _SQLITE_COUNT
    rows = (await session.execute(_typed(page_sql), params)).mappings().all()
    if rows:
        total = int(rows[0]["total"])
    elif offset == 0:
        total = 0
    else:  # past the end: the page query saw no row to carry the count
        count_params = {k: v for k, v in params.items() if k in ("user_id", "tsquery", "match")}
        total = int(await session.scalar(text(count_sql), count_params) or 0)
    hits = [
        SearchHit(
            message_id=int(r["message_id"]),
            conversation_id=r["conversation_id"],
            conversation_title=r["conversation_title"],
            role=r["role"],
            created_at=r["created_at"],
            snippet=parse_marked(r["marked"] or "", markers),
            score=float(r["score"] or 0.0),
        )
        for r in rows
    ]
    return SearchPage(hits=hits, total=total)
