"""full-text search over messages (SQLite FTS5, PostgreSQL tsvector + GIN)

Only user and assistant messages are indexed: tool output (search results, calculator values) would
flood results with text nobody wrote or read as an answer.

SQLite: `messages_fts`, an FTS5 table with external content (`messages` keeps the only copy of the
text), kept in step by triggers and filled with the existing messages here. If a later migration
recreates `messages` on SQLite (a batch operation that copies the table), it must create these
triggers again: dropping the old table drops them.

PostgreSQL: `messages.search_vector`, a stored generated tsvector with a GIN index; adding it computes it
for every existing row.

Both use language-neutral tokenizing (FTS5 unicode61; the `simple` configuration): chatstack's users
write in many languages, and an English stemmer would mangle other languages' words and drop English
stop words from phrases. Prefix search (`word*`) covers most of what stemming would.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCHED_ROLES = "('user', 'assistant')"

SQLITE_UP = [
    # prefix='2 3': prefix queries of two or three characters read one precomputed list instead of
    # merging the lists of every word that starts so.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2', prefix='2 3')",
    # An external-content index must be told the exact old text to remove, hence the triggers.
    f"""CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
        WHEN new.role IN {SEARCHED_ROLES} BEGIN
          INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
        END""",
    f"""CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
        WHEN old.role IN {SEARCHED_ROLES} BEGIN
          INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        END""",
    # One trigger, old entry out before the new one in: two triggers would run in an unspecified order.
    f"""CREATE TRIGGER messages_fts_update AFTER UPDATE OF id, role, content ON messages BEGIN
          INSERT INTO messages_fts (messages_fts, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.role IN {SEARCHED_ROLES};
          INSERT INTO messages_fts (rowid, content)
            SELECT new.id, new.content WHERE new.role IN {SEARCHED_ROLES};
        END""",
    # The messages written before this migration.
    f"INSERT INTO messages_fts (rowid, content) "
    f"SELECT id, content FROM messages WHERE role IN {SEARCHED_ROLES}",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TABLE IF EXISTS messages_fts",
]

POSTGRES_UP = [
    f"""ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
          CASE WHEN role IN {SEARCHED_ROLES} THEN to_tsvector('simple'::regconfig, content) END
        ) STORED""",
    "CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_messages_search_vector",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_UP)
    elif dialect == "postgresql":
        _run(POSTGRES_UP)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_DOWN)
    elif dialect == "postgresql":
        _run(POSTGRES_DOWN)
