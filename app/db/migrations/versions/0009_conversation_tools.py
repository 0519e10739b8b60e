"""per-conversation tool selection (conversations.tools)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The names of the tools enabled in the conversation; NULL: every tool whose approval is not `deny`.
    # A plain ADD COLUMN on both databases (no batch: on SQLite a batch copies the table).
    op.add_column("conversations", sa.Column("tools", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER (SQLite has DROP COLUMN since 3.35): a batch would copy `conversations` and drop the
    # old table, and with foreign keys on that drop would cascade to every message.
    op.drop_column("conversations", "tools")
