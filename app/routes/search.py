"""`GET /api/search`: full-text search over the caller's messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.deps import CurrentUser, StoreDep
from app.schemas import ErrorBody
from app.search_query import MAX_QUERY_CHARS, parse
from app.store_search import SearchOrder

router = APIRouter(prefix="/api/search", tags=["search"])
MAX_LIMIT = 100


class SearchResult(BaseModel):
    conversation_id: str
    conversation_title: str
    message_id: int
    role: str
    snippet: str = Field(description="Plain text around the match (never HTML: display it as text).")
    highlights: list[tuple[int, int]] = Field(
        description="The matched words in `snippet`: [start, end) offsets in Unicode code points "
        "(in JavaScript, index `Array.from(snippet)`, not the UTF-16 string)."
    )
    created_at: datetime


class SearchResults(BaseModel):
    items: list[SearchResult]
    total: int
    has_more: bool


BAD_QUERY: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "Nothing to search for, or the query is too long"}
}


@router.get("", responses=BAD_QUERY)
async def search(
    user: CurrentUser,
    store: StoreDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    order: Annotated[SearchOrder, Query()] = "rank",
) -> SearchResults:
    """The caller's messages (questions and answers, not tool output) that contain every word of `q`.

    Syntax: `words` (all of them), `"a phrase"`, `prefix*`. Matching ignores case (and, on SQLite,
    accents). `order=rank` puts the best matches first, `order=recent` the newest.
    """
    terms = parse(q)
    page = await store.search_messages(user.id, terms, order=order, limit=limit, offset=offset)
    items = [
        SearchResult(
            conversation_id=h.conversation_id,
            conversation_title=h.conversation_title,
            message_id=h.message_id,
            role=h.role,
            snippet=h.snippet.text,
            highlights=h.snippet.highlights,
            created_at=h.created_at,
        )
        for h in page.hits
    ]
    return SearchResults(items=items, total=page.total, has_more=offset + len(items) < page.total)
