"""files attached to conversations, and their text chunks for search

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attachments_conversation", "attachments", ["conversation_id", "created_at"])
    op.create_table(
        "message_attachments",
        sa.Column("message_id", BIG_ID, nullable=False),
        sa.Column("attachment_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["attachment_id"], ["attachments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id", "attachment_id"),
    )
    op.create_index("ix_message_attachments_attachment", "message_attachments", ["attachment_id"])
    op.create_table(
        "attachment_chunks",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("attachment_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["attachment_id"], ["attachments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_attachment_chunks_attachment", "attachment_chunks", ["attachment_id", "seq"])
    op.create_index("ix_attachment_chunks_conversation_id", "attachment_chunks", ["conversation_id"])
    if op.get_bind().dialect.name == "postgresql":
        # A stored tsvector, not only an expression index: ranking reads it for every match, and
        # parsing the text again per match costs seconds when a common word matches thousands of
        # passages. The language-neutral `simple` configuration, as for messages (0007).
        op.execute(
            "ALTER TABLE attachment_chunks ADD COLUMN search_vector tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED"
        )
        op.execute("CREATE INDEX ix_attachment_chunks_fts ON attachment_chunks USING gin (search_vector)")
    else:
        # An external-content FTS5 table: the text is stored once (in attachment_chunks), the index
        # follows it through triggers. Chunks are only inserted and deleted (directly or by the
        # cascade from their attachment, which fires the delete trigger too), never updated.
        op.execute(
            "CREATE VIRTUAL TABLE attachment_chunks_fts USING fts5("
            "text, content='attachment_chunks', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
        )
        op.execute(
            "CREATE TRIGGER attachment_chunks_ai AFTER INSERT ON attachment_chunks BEGIN "
            "INSERT INTO attachment_chunks_fts(rowid, text) VALUES (new.id, new.text); END"
        )
        op.execute(
            "CREATE TRIGGER attachment_chunks_ad AFTER DELETE ON attachment_chunks BEGIN "
            "INSERT INTO attachment_chunks_fts(attachment_chunks_fts, rowid, text) "
            "VALUES ('delete', old.id, old.text); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_attachment_chunks_fts")
    else:
        op.execute("DROP TRIGGER IF EXISTS attachment_chunks_ad")
        op.execute("DROP TRIGGER IF EXISTS attachment_chunks_ai")
        op.execute("DROP TABLE IF EXISTS attachment_chunks_fts")
    op.drop_table("attachment_chunks")
    op.drop_table("message_attachments")
    op.drop_table("attachments")
