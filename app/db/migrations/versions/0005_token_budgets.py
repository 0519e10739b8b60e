"""token budgets: a per-user budget override, and tokens used per user, period and backend

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_budget", sa.BigInteger(), nullable=True))
    op.create_table(
        "token_usage",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_token_usage_user", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "period_start", "backend", name="pk_token_usage"),
    )


def downgrade() -> None:
    op.drop_table("token_usage")
    # A plain ALTER (SQLite has one since 3.35), not a batch: on SQLite a batch copies `users` and drops
    # the old table, and with foreign keys on that drop would cascade to every conversation.
    op.drop_column("users", "token_budget")
