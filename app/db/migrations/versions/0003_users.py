"""users with API keys; every conversation belongs to one

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 02:10:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOCAL_USER_ID = "local"


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("key_hash", name="uq_users_key_hash"),
    )
    # The owner of everything created while authentication is off (and of all earlier conversations).
    op.bulk_insert(users, [{"id": LOCAL_USER_ID, "name": "local", "created_at": datetime.now(UTC)}])
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=32), nullable=True))
    op.execute(sa.text("UPDATE conversations SET user_id = :u").bindparams(u=LOCAL_USER_ID))
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_foreign_key("fk_conversations_user", "users", ["user_id"], ["id"], ondelete="CASCADE")
        batch_op.create_index("ix_conversations_user_updated", ["user_id", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_user_updated")
        batch_op.drop_constraint("fk_conversations_user", type_="foreignkey")
        batch_op.drop_column("user_id")
    op.drop_table("users")
