"""The SQL schema: users, conversations, their messages, the runs that produced them, each run's events,
and the tokens each user used per budget period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC, always timezone-aware: SQLite keeps no offset, so it is restored on load."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


LOCAL_USER_ID = "local"
"""Owns everything created while authentication is off."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """SHA-256 of the API key: keys are long random tokens, so a fast hash is enough."""
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    token_budget: Mapped[int | None] = mapped_column(BigInteger)
    """Tokens per budget period: None follows `CHATSTACK_USER_TOKEN_BUDGET`, 0 is unlimited."""


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=LOCAL_USER_ID)
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    backend: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    tools: Mapped[list[Any] | None] = mapped_column(JSON)
    """Names of the tools enabled here; None: every tool whose approval is not `deny` (migration 0009)."""
    active_leaf_id: Mapped[int | None] = mapped_column(BigIntId)
    """The last message of the branch shown and continued (None: no messages yet). No foreign key: it
    would close a cycle with `messages` (see migration 0006); the store sets it to its own messages only."""


ACTIVE_RUN_SQL = "status IN ('running', 'awaiting_approval')"
"""Runs that hold their conversation: executing, or paused until the user approves a tool call."""


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # At most one active run per conversation, enforced by the database so that it also
        # holds across several app processes. A run waiting for a tool approval is still active: the
        # conversation continues from its answer (migration 0010).
        Index(
            "uq_runs_one_active_per_conversation",
            "conversation_id",
            unique=True,
            sqlite_where=text(ACTIVE_RUN_SQL),
            postgresql_where=text(ACTIVE_RUN_SQL),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    # 32 since migration 0010 (`awaiting_approval`); SQLite's column still says 16, which it never enforced.
    status: Mapped[str] = mapped_column(String(16).with_variant(String(32), "postgresql"), default="running")
    """`running`, `awaiting_approval`, or how it ended: `completed`, `cancelled`, `failed`, `interrupted`."""
    backend: Mapped[str] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(200))
    """The address of the process executing the run; other replicas forward its stream and cancel there."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Since when the run waits for tool approvals (status `awaiting_approval`)."""
    approval_wait_ms: Mapped[float | None] = mapped_column(Float)
    """Time the run spent waiting for approvals, summed over its pauses (None: it never waited)."""


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_order", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("messages.id"), index=True)
    """The message this one follows (None: a first message). Alternatives (edits, regenerated answers)
    share a parent. No ON DELETE action on purpose (see migration 0006)."""
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(64))
    sources: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="complete")
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    backend: Mapped[str | None] = mapped_column(String(100))
    duration_ms: Mapped[float | None] = mapped_column(Float)
    """For tool messages: how long the call took."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RunEvent(Base):
    __tablename__ = "run_events"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class TokenUsage(Base):
    """Tokens a user's model calls used in one budget period on one backend, as the backend reported them.

    One row per (user, period, backend), added to with an atomic upsert, so that replicas share counts.
    """

    __tablename__ = "token_usage"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    backend: Mapped[str] = mapped_column(String(100), primary_key=True)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ToolApproval(Base):
    """A tool call a paused run waits on, and what the user decided (`pending`, `approved`, `denied`,
    `cancelled`). The paused run itself is its stored messages: the assistant message with the calls."""

    __tablename__ = "tool_approvals"
    __table_args__ = (Index("ix_tool_approvals_pending", "status", "expires_at"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    server: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The parsed arguments; None when the model's JSON was malformed (`arguments_text` has it)."""
    arguments_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)


class Attachment(Base):
    """A file attached to a conversation: its bytes (in the database, so that every replica serves
    them and deleting the conversation deletes them) and the text extracted from it."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_conversation", "conversation_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    """Decided from the content, never from the name or the client's Content-Type."""
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    """Bytes, as uploaded."""
    tokens: Mapped[int] = mapped_column(Integer)
    """The extracted text's size in tokens (estimated, as the context trimming estimates them)."""
    pages: Mapped[int | None] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MessageAttachment(Base):
    """Which attachments a message references, in the order the user gave them."""

    __tablename__ = "message_attachments"
    __table_args__ = (Index("ix_message_attachments_attachment", "attachment_id"),)

    message_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    attachment_id: Mapped[str] = mapped_column(
        ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class AttachmentChunk(Base):
    """A passage of an attachment's text, indexed for full-text search (SQLite FTS5 table
    `attachment_chunks_fts`; PostgreSQL generated `search_vector`, GIN-indexed: made by migration 0008)."""

    __tablename__ = "attachment_chunks"
    __table_args__ = (Index("ix_attachment_chunks_attachment", "attachment_id", "seq"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    attachment_id: Mapped[str] = mapped_column(ForeignKey("attachments.id", ondelete="CASCADE"))
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    """Denormalised from the attachment: a search is scoped to one conversation without a join."""
    seq: Mapped[int] = mapped_column(Integer)
    location: Mapped[str] = mapped_column(String(100))
    """Where the passage is, for people: "page 3", "pages 3-4", "lines 10-52"."""
    text: Mapped[str] = mapped_column(Text)
