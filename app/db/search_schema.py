"""The full-text search objects that migration 0007 creates beside the models: names for the queries
in `app.store_search`, and a filter that keeps them out of model/database comparisons (the models do
not declare them: an FTS5 table and a PostgreSQL generated tsvector have no portable ORM form)."""

from __future__ import annotations

from collections.abc import Mapping

FTS_TABLE = "messages_fts"
"""SQLite: the FTS5 index of messages (rowid = messages.id)."""
TSVECTOR_COLUMN = "search_vector"
"""PostgreSQL: messages' generated tsvector (NULL for messages that are not searched)."""
TS_CONFIG = "simple"
"""PostgreSQL text search configuration: language-neutral, like FTS5's unicode61 tokenizer."""
_PG_INDEX = "ix_messages_search_vector"
ATTACHMENT_FTS_TABLE = "attachment_chunks_fts"
"""SQLite: the FTS5 index of attachments' passages (migration 0008; rowid = attachment_chunks.id)."""
_PG_ATTACHMENT_INDEX = "ix_attachment_chunks_fts"
"""PostgreSQL: the GIN index on the passages' `search_vector` (migration 0008)."""


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Alembic's `include_name` hook: False for the search objects (and FTS5's shadow tables)."""
    if name is None:
        return True
    if type_ == "table":
        return not any(name == t or name.startswith(t + "_") for t in (FTS_TABLE, ATTACHMENT_FTS_TABLE))
    if type_ == "column" and parent_names.get("table_name") in ("messages", "attachment_chunks"):
        return name != TSVECTOR_COLUMN
    if type_ == "index":
        return name not in (_PG_INDEX, _PG_ATTACHMENT_INDEX)
    return True
