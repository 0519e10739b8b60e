"""tool calls waiting for the user's approval

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_ACTIVE = "uq_runs_one_active_per_conversation"


def upgrade() -> None:
    op.create_table(
        "tool_approvals",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=True),
        sa.Column("arguments_text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "call_id"),
    )
    op.create_index("ix_tool_approvals_pending", "tool_approvals", ["status", "expires_at"])
    # Plain ALTERs and index statements, not a batch: on SQLite a batch copies `runs` and drops the old
    # table, and with foreign keys on that drop would cascade to every message's run and event.
    op.add_column("runs", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("runs", sa.Column("approval_wait_ms", sa.Float(), nullable=True))
    # `awaiting_approval` is longer than the 16 characters runs' statuses had. SQLite does not enforce
    # lengths (and rewriting its `runs` table would cascade, see above): only PostgreSQL's changes.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("runs", "status", type_=sa.String(length=32), existing_type=sa.String(length=16))
    # A paused run still holds its conversation (a new message would answer before its tool call).
    op.drop_index(ONE_ACTIVE, table_name="runs")
    active = sa.text("status IN ('running', 'awaiting_approval')")
    op.create_index(
        ONE_ACTIVE, "runs", ["conversation_id"], unique=True, sqlite_where=active, postgresql_where=active
    )


def downgrade() -> None:
    op.drop_index(ONE_ACTIVE, table_name="runs")
    # Paused runs cannot continue on a schema without approvals: they end as interrupted.
    op.execute(
        "UPDATE runs SET status = 'interrupted', error_code = 'interrupted' "
        "WHERE status = 'awaiting_approval'"
    )
    running = sa.text("status = 'running'")
    op.create_index(
        ONE_ACTIVE, "runs", ["conversation_id"], unique=True, sqlite_where=running, postgresql_where=running
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("runs", "status", type_=sa.String(length=16), existing_type=sa.String(length=32))
    op.drop_column("runs", "approval_wait_ms")
    op.drop_column("runs", "paused_at")
    op.drop_index("ix_tool_approvals_pending", table_name="tool_approvals")
    op.drop_table("tool_approvals")
