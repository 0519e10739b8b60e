"""Reads and writes of conversations, messages, runs and run events. The only module that queries SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Conversation, Message, Run, RunEvent, User
from app.errors import Conflict, NotFound

TITLE_CHARS = 60
CRASH_SEQ_GAP = 100_000


def _unfinished_answer(events: Sequence[RunEvent]) -> str:
    """Answer text streamed after the last stored assistant message: what a crash would otherwise lose."""
    parts: list[str] = []
    for event in events:
        if event.type == "message.delta":
            parts.append(str(event.data.get("text", "")))
        elif event.type == "message.completed":
            parts.clear()
    return "".join(parts)


def title_from(content: str) -> str:
    """A conversation title from its first message: the first line, shortened on a word boundary."""
    line = " ".join(content.strip().split())
    if len(line) <= TITLE_CHARS:
        return line or "New chat"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


class Store:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, serialize_writes: bool = False) -> None:
        self._sessions = sessions
        # SQLite has one writer at a time and its busy handler sleeps in steps of up to 100 ms; queueing
        # this process's writes here instead keeps each one to a fraction of a millisecond under load.
        self._write_lock = asyncio.Lock() if serialize_writes else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction (queued behind this process's other writes on SQLite)."""
        if self._write_lock is None:
            async with self._sessions.begin() as session:
                yield session
            return
        async with self._write_lock, self._sessions.begin() as session:
            yield session

    # conversations: every read and write is scoped to the user, so another user's ids are simply not found

    async def create_conversation(self, user_id: str, title: str | None, backend: str | None) -> Conversation:
        async with self._write() as session:
            row = Conversation(user_id=user_id, title=title or "New chat", backend=backend)
            session.add(row)
        return row

    async def list_conversations(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[Sequence[Conversation], int]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Conversation)
                .where(Conversation.user_id == user_id)
                .order_by(Conversation.updated_at.desc(), Conversation.id)
                .limit(limit)
                .offset(offset)
            )
            total = await session.scalar(
                select(func.count()).select_from(Conversation).where(Conversation.user_id == user_id)
            )
            return rows.all(), int(total or 0)

    async def get_conversation(self, conversation_id: str, user_id: str | None) -> Conversation:
        """The conversation, if it exists and belongs to `user_id` (None: any user, for internal use)."""
        async with self._sessions() as session:
            row = await session.get(Conversation, conversation_id)
        if row is None or (user_id is not None and row.user_id != user_id):
            raise NotFound(f"conversation {conversation_id} not found")
        return row

    async def update_conversation(
        self, conversation_id: str, user_id: str, changes: dict[str, Any]
    ) -> Conversation:
        async with self._write() as session:
            row = await session.get(Conversation, conversation_id)
            if row is None or row.user_id != user_id:
                raise NotFound(f"conversation {conversation_id} not found")
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at = datetime.now(UTC)
        return row

    async def delete_conversation(self, conversation_id: str, user_id: str) -> None:
        async with self._write() as session:
            result = await session.execute(
                delete(Conversation).where(
                    Conversation.id == conversation_id, Conversation.user_id == user_id
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"conversation {conversation_id} not found")

    # messages

    async def messages(self, conversation_id: str) -> Sequence[Message]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
            )
            return rows.all()

    async def add_message(self, **fields: Any) -> Message:
        async with self._write() as session:
            row = Message(**fields)
            session.add(row)
        return row

    # runs

    async def start_run(
        self, conversation_id: str, backend: str, content: str | None, owner: str | None = None
    ) -> tuple[Run, Message]:
        """Create a running run and its user message in one transaction.

        With `content` None the run answers the last user message again instead: the answer that
        followed it (and its tool steps) is deleted in the same transaction.
        Raises `Conflict` when the conversation already has a running run (a unique index decides,
        so this holds across processes too).
        """
        try:
            async with self._write() as session:
                conversation = await session.get(Conversation, conversation_id, with_for_update=True)
                if conversation is None:
                    raise NotFound(f"conversation {conversation_id} not found")
                run = Run(
                    conversation_id=conversation_id,
                    backend=backend,
                    status="running",
                    owner=owner,
                    heartbeat_at=datetime.now(UTC),
                )
                session.add(run)
                await session.flush()
                if content is None:
                    message = await self._take_last_question(session, conversation_id)
                    has_messages: int | None = 1
                else:
                    has_messages = await session.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(Message.conversation_id == conversation_id)
                    )
                    message = Message(
                        conversation_id=conversation_id,
                        run_id=run.id,
                        role="user",
                        content=content,
                        backend=backend,
                    )
                    session.add(message)
                if not has_messages and conversation.title == "New chat":
                    conversation.title = title_from(message.content)
                conversation.backend = backend
                conversation.updated_at = datetime.now(UTC)
        except IntegrityError as exc:
            raise Conflict(
                f"conversation {conversation_id} already has a running answer; wait for it or cancel it",
                code="run_in_progress",
            ) from exc
        return run, message

    @staticmethod
    async def _take_last_question(session: AsyncSession, conversation_id: str) -> Message:
        last_question = await session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.role == "user")
            .order_by(Message.id.desc())
            .limit(1)
        )
        if last_question is None:
            raise Conflict("there is no question to answer again yet", code="nothing_to_regenerate")
        await session.execute(
            delete(Message).where(Message.conversation_id == conversation_id, Message.id > last_question.id)
        )
        return last_question

    async def get_run(self, run_id: str, user_id: str | None = None) -> Run:
        """The run, if it exists and its conversation belongs to `user_id` (None: any user)."""
        async with self._sessions() as session:
            query = select(Run).where(Run.id == run_id)
            if user_id is not None:
                query = query.join(Conversation, Conversation.id == Run.conversation_id).where(
                    Conversation.user_id == user_id
                )
            row = await session.scalar(query)
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return row

    async def runs_of(self, conversation_id: str) -> Sequence[Run]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Run).where(Run.conversation_id == conversation_id).order_by(Run.created_at, Run.id)
            )
            return rows.all()

    async def running_runs_of(self, user_id: str) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(Run)
                .join(Conversation, Conversation.id == Run.conversation_id)
                .where(Conversation.user_id == user_id, Run.status == "running")
            )
        return int(count or 0)

    async def active_run_id(self, conversation_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Run.id).where(Run.conversation_id == conversation_id, Run.status == "running")
            )

    async def finish_run(self, run_id: str, **fields: Any) -> None:
        async with self._write() as session:
            await session.execute(
                update(Run).where(Run.id == run_id).values(finished_at=datetime.now(UTC), **fields)
            )

    async def heartbeat(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        async with self._write() as session:
            await session.execute(
                update(Run)
                .where(Run.id.in_(run_ids), Run.status == "running")
                .values(heartbeat_at=datetime.now(UTC))
            )

    async def orphaned_runs(self, owner: str, stale_before: datetime) -> list[str]:
        """Running runs that this process owned before a restart, or whose owner stopped heartbeating."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Run.id).where(
                    Run.status == "running",
                    or_(Run.owner == owner, Run.owner.is_(None), Run.heartbeat_at < stale_before),
                )
            )
            return list(rows.all())

    async def interrupt_run(self, run_id: str, message: str, *, stale_before: datetime | None = None) -> bool:
        """End a run whose process died: keep the answer it had streamed, close its event stream.

        Atomic and idempotent across replicas: only the caller that flips the status does the rest.
        With `stale_before`, a run whose owner heartbeated since then is left alone.
        """
        async with self._write() as session:
            claim = update(Run).where(Run.id == run_id, Run.status == "running")
            if stale_before is not None:
                claim = claim.where(or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < stale_before))
            result = await session.execute(
                claim.values(
                    status="interrupted",
                    error_code="interrupted",
                    error_message=message,
                    finished_at=datetime.now(UTC),
                )
            )
            if not getattr(result, "rowcount", 0):
                return False
            run = await session.get(Run, run_id)
            assert run is not None
            events = (
                await session.scalars(
                    select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
                )
            ).all()
            partial = _unfinished_answer(events)
            # Events the dead process streamed but never stored may have reached clients: new ids jump
            # past them, so a client resuming from any id it saw still gets the end of the run.
            seq = (events[-1].seq if events else 0) + CRASH_SEQ_GAP
            if partial:
                row = Message(
                    conversation_id=run.conversation_id,
                    run_id=run_id,
                    role="assistant",
                    content=partial,
                    status="interrupted",
                    backend=run.backend,
                )
                session.add(row)
                await session.flush()
                seq += 1
                completed = {
                    "message_id": row.id,
                    "content": partial,
                    "status": "interrupted",
                    "tool_calls": [],
                    "usage": None,
                }
                session.add(RunEvent(run_id=run_id, seq=seq, type="message.completed", data=completed))
            session.add(
                RunEvent(
                    run_id=run_id,
                    seq=seq + 1,
                    type="run.error",
                    data={"code": "interrupted", "message": message},
                )
            )
            finished = {
                "status": "interrupted",
                "timings": {
                    "ttft_ms": run.ttft_ms,
                    "total_ms": None,
                    "llm_calls": run.llm_calls,
                    "tool_calls": run.tool_calls,
                },
                "usage": None,
            }
            session.add(RunEvent(run_id=run_id, seq=seq + 2, type="run.finished", data=finished))
        return True

    # run events

    async def add_events(self, events: Sequence[dict[str, Any]]) -> None:
        """Store events of any runs at once: rows of `run_id`, `seq`, `type`, `data`."""
        if not events:
            return
        async with self._write() as session:
            # A Core insert of plain rows: the ORM would build an object per event for nothing.
            await session.execute(insert(RunEvent), list(events))

    async def events_after(self, run_id: str, after: int, limit: int = 1000) -> Sequence[RunEvent]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RunEvent)
                .where(RunEvent.run_id == run_id, RunEvent.seq > after)
                .order_by(RunEvent.seq)
                .limit(limit)
            )
            return rows.all()

    # users

    async def create_user(self, name: str, key_hash: str, key_prefix: str) -> User:
        try:
            async with self._write() as session:
                row = User(name=name, key_hash=key_hash, key_prefix=key_prefix)
                session.add(row)
        except IntegrityError as exc:
            raise Conflict(f"a user named {name!r} already exists", code="user_exists") from exc
        return row

    async def users(self) -> Sequence[User]:
        async with self._sessions() as session:
            return (await session.scalars(select(User).order_by(User.created_at))).all()

    async def revoke_user(self, name: str) -> None:
        async with self._write() as session:
            result = await session.execute(
                update(User)
                .where(User.name == name, User.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"no active user named {name!r}")

    async def user_by_key_hash(self, key_hash: str) -> User | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(User).where(User.key_hash == key_hash, User.revoked_at.is_(None))
            )
