"""The full-text search objects that migrations create beside the models (0007: messages; 0008:
attachment passages): names for the queries in `app.store_search`, and a filter that keeps them out of
model/database comparisons (an FTS5 table and a generated tsvector have no portable ORM form)."""

from __future__ import annotations

from alembic.runtime.environment import NameFilterParentNames, NameFilterType

FTS_TABLE = "messages_fts"
"""SQLite: the FTS5 index of messages (rowid = messages.id)."""
TSVECTOR_COLUMN = "search_vector"
"""PostgreSQL: messages' generated tsvector (NULL for messages that are not searched)."""
TS_CONFIG = "simple"
"""PostgreSQL text search configuration: language-neutral, like FTS5's unicode61 tokenizer."""
_FTS5_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")


def _is_fts5_table(name: str) -> bool:
    # Every full-text table is named `<table>_fts` (messages', attachment passages'); FTS5 keeps its
    # index in shadow tables named after it.
    return name.endswith("_fts") or any(name.endswith("_fts" + shadow) for shadow in _FTS5_SHADOWS)


def include_name(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """Alembic's `include_name` hook: False for the full-text objects that the models do not declare
    (FTS5 tables and their shadow tables, `search_vector` columns and their GIN indexes)."""
    if name is None:
        return True
    if type_ == "table":
        return not _is_fts5_table(name)
    if type_ == "column":
        return name != TSVECTOR_COLUMN
    if type_ == "index":
        return not (name.endswith("_" + TSVECTOR_COLUMN) or name.endswith("_fts"))
    return True
