"""messages form a tree (parent_id) and conversations remember their active leaf

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00

Existing conversations become one chain each: every message's parent is the message before it in its
conversation (by id), and the last one is the active leaf, so they read exactly as before.

Both columns are plain ALTER TABLE ADD COLUMN on SQLite too, never a batch: a batch copies the table and
drops the old one, and with foreign keys on, that drop acts on every table referencing it (it would
cascade from `conversations` to all messages). For the same reason the self reference has no ON DELETE
action: a later batch on `messages` then fails loudly instead of silently deleting the copied rows that
reference the dropped table by name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("parent_id", BIG_ID, sa.ForeignKey("messages.id"), nullable=True),
        inline_references=True,
    )
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"], unique=False)
    # No foreign key: one would close a cycle with messages.conversation_id, making either table
    # impossible to rebuild on SQLite; the store only ever sets it to a message of the conversation.
    op.add_column("conversations", sa.Column("active_leaf_id", BIG_ID, nullable=True))
    # Correlated subqueries that the (conversation_id, id) index answers: portable across both
    # databases and one pass over the table.
    op.execute(
        "UPDATE messages SET parent_id = ("
        "SELECT MAX(previous.id) FROM messages AS previous "
        "WHERE previous.conversation_id = messages.conversation_id AND previous.id < messages.id)"
    )
    op.execute(
        "UPDATE conversations SET active_leaf_id = ("
        "SELECT MAX(messages.id) FROM messages WHERE messages.conversation_id = conversations.id)"
    )


def downgrade() -> None:
    op.drop_column("conversations", "active_leaf_id")
    op.drop_index("ix_messages_parent_id", table_name="messages")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column that a foreign key uses: the table is rebuilt. Safe here: only
        # the parent_id foreign key references `messages`, and its rows all go together.
        with op.batch_alter_table("messages", recreate="always") as batch_op:
            batch_op.drop_column("parent_id")
    else:
        op.drop_column("messages", "parent_id")
