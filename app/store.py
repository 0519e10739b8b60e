"""Reads and writes of conversations, messages, runs and run events. The only module that queries SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Conversation, Message, Run, RunEvent, TokenUsage, User
from app.errors import Conflict, NotFound, TooManyRequests
from protocol import run_events

DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, OSError)
"""What the store raises when the database fails or cannot be reached (a refused connection may
surface as the bare OSError)."""
TITLE_CHARS = 60


def describe_database_error(exc: BaseException) -> str:
    """A database failure in one line, for the log: without the statement and its parameters, which
    hold users' messages."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return lines[0][:300]


CRASH_SEQ_GAP = 100_000


def _unfinished_answer(events: Sequence[RunEvent]) -> str:
    """Answer text streamed after the last stored assistant message: what a crash would otherwise lose."""
    parts: list[str] = []
    for row in events:
        try:
            event = run_events.parse_event(row.type, row.data)
        except run_events.InvalidEvent:
            continue
        if isinstance(event, run_events.MessageDelta):
            parts.append(event.text)
        elif isinstance(event, run_events.MessageCompleted):
            parts.clear()
    return "".join(parts)


def _event_row(run_id: str, seq: int, event: run_events.EventData) -> RunEvent:
    return RunEvent(run_id=run_id, seq=seq, type=event.TYPE, data=event.to_data())


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

    async def add_messages(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Store messages (column values) in one transaction, in order; returns their ids."""
        ids: list[int] = []
        async with self._write() as session:
            for fields in rows:
                row = Message(**fields)
                session.add(row)
                await session.flush()  # one at a time: ids follow the order given
                ids.append(row.id)
        return ids

    # runs

    async def start_run(
        self,
        conversation_id: str,
        user_id: str,
        backend: str,
        content: str | None,
        *,
        max_running: int,
        owner: str | None = None,
    ) -> tuple[Run, Message]:
        """Create a running run and its user message in one transaction.

        With `content` None the run answers the last user message again instead: the answer that
        followed it (and its tool steps) is deleted in the same transaction.
        Raises `Conflict` when the conversation already has a running run (a unique index decides,
        so this holds across processes too), and `TooManyRequests` (`too_many_runs`) when the user
        already has `max_running` runs running: counted in the same transaction, atomically across
        processes sharing the database (see below).
        """
        try:
            async with self._write() as session:
                if session.get_bind().dialect.name == "postgresql":
                    # Under READ COMMITTED two transactions would both count the other's run as not
                    # there yet and both insert. Locking the user's row first queues one user's starts,
                    # on every replica; the count below is a new statement, so it sees the run the
                    # previous holder of the lock committed. NO KEY UPDATE leaves the key-share locks of
                    # foreign key checks (new conversations of the user) unblocked.
                    await session.execute(
                        select(User.id).where(User.id == user_id).with_for_update(key_share=True)
                    )
                conversation = await session.get(Conversation, conversation_id, with_for_update=True)
                if conversation is None or conversation.user_id != user_id:
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
                # SQLite: this insert is the transaction's first write (its driver begins transactions
                # there; the reads above ran outside one), so it took the database's write lock on a
                # current snapshot, held until commit: no other process can start a run between this
                # count and the commit. The count includes the new run.
                running = await session.scalar(
                    select(func.count())
                    .select_from(Run)
                    .join(Conversation, Conversation.id == Run.conversation_id)
                    .where(Conversation.user_id == user_id, Run.status == "running")
                )
                if (running or 0) > max_running:
                    raise TooManyRequests(
                        f"you already have {max_running} answers running; wait for one",
                        code="too_many_runs",
                        headers={"Retry-After": "5"},
                    )
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

    async def active_run_id(self, conversation_id: str) -> str | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Run.id).where(Run.conversation_id == conversation_id, Run.status == "running")
            )

    async def save_outcome(
        self,
        run_id: str,
        run_fields: dict[str, Any],
        messages: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
    ) -> bool:
        """Store the end of a run in one transaction: the run's final columns, the messages it could
        not store while it ran, and its events not stored yet.

        Returns False, storing nothing, when the run is no longer running: another replica ended it
        as orphaned meanwhile, or its conversation was deleted. That stored end stands.
        """
        async with self._write() as session:
            result = await session.execute(
                update(Run).where(Run.id == run_id, Run.status == "running").values(**run_fields)
            )
            if not getattr(result, "rowcount", 0):
                return False
            for fields in messages:
                session.add(Message(**fields))
                await session.flush()  # one at a time: ids follow the order of the run
            if events:
                await session.execute(insert(RunEvent), list(events))
        return True

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
                completed = run_events.MessageCompleted(
                    message_id=row.id, content=partial, status="interrupted", tool_calls=[], usage=None
                )
                session.add(_event_row(run_id, seq, completed))
            session.add(_event_row(run_id, seq + 1, run_events.RunError(code="interrupted", message=message)))
            finished = run_events.RunFinished(
                status="interrupted",
                timings=run_events.Timings(
                    ttft_ms=run.ttft_ms, total_ms=None, llm_calls=run.llm_calls, tool_calls=run.tool_calls
                ),
                usage=None,
            )
            session.add(_event_row(run_id, seq + 2, finished))
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

    # usage and budgets

    async def add_token_usage(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add tokens to users' counts: rows of `user_id`, `period_start`, `backend`, `prompt_tokens`,
        `completion_tokens`. Atomic upserts in one transaction, so that replicas adding at once all count."""
        if not rows:
            return
        now = datetime.now(UTC)
        # One order in every process: two replicas' batches never wait on each other's rows in a cycle.
        ordered = sorted(rows, key=lambda r: (r["user_id"], r["period_start"], r["backend"]))
        async with self._write() as session:
            dialect = session.get_bind().dialect.name
            upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(TokenUsage)
            await session.execute(
                upsert.on_conflict_do_update(
                    index_elements=[TokenUsage.user_id, TokenUsage.period_start, TokenUsage.backend],
                    set_={
                        "prompt_tokens": TokenUsage.prompt_tokens + upsert.excluded.prompt_tokens,
                        "completion_tokens": TokenUsage.completion_tokens + upsert.excluded.completion_tokens,
                        "updated_at": upsert.excluded.updated_at,
                    },
                ),
                [{**row, "updated_at": now} for row in ordered],
            )

    async def token_budget_state(
        self, user_id: str, start: datetime, end: datetime
    ) -> tuple[int | None, int]:
        """(the user's own budget, None to follow the default; tokens used in [start, end)), in one query."""
        used = (
            select(func.coalesce(func.sum(TokenUsage.prompt_tokens + TokenUsage.completion_tokens), 0))
            .where(
                TokenUsage.user_id == user_id, TokenUsage.period_start >= start, TokenUsage.period_start < end
            )
            .scalar_subquery()
        )
        async with self._sessions() as session:
            row = (await session.execute(select(User.token_budget, used).where(User.id == user_id))).first()
        if row is None:
            return None, 0
        return row[0], int(row[1] or 0)

    async def token_usage_by_backend(
        self, user_id: str, start: datetime, end: datetime
    ) -> tuple[int | None, list[tuple[str, int, int]]]:
        """(the user's own budget; (backend, prompt tokens, completion tokens) used in [start, end))."""
        async with self._sessions() as session:
            override = await session.scalar(select(User.token_budget).where(User.id == user_id))
            rows = await session.execute(
                select(
                    TokenUsage.backend,
                    func.sum(TokenUsage.prompt_tokens),
                    func.sum(TokenUsage.completion_tokens),
                )
                .where(
                    TokenUsage.user_id == user_id,
                    TokenUsage.period_start >= start,
                    TokenUsage.period_start < end,
                )
                .group_by(TokenUsage.backend)
                .order_by(TokenUsage.backend)
            )
            return override, [(backend, int(p or 0), int(c or 0)) for backend, p, c in rows.all()]

    async def token_usage_per_user(self, start: datetime, end: datetime) -> dict[str, int]:
        """Tokens used in [start, end) by user id (users with none are left out)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(TokenUsage.user_id, func.sum(TokenUsage.prompt_tokens + TokenUsage.completion_tokens))
                .where(TokenUsage.period_start >= start, TokenUsage.period_start < end)
                .group_by(TokenUsage.user_id)
            )
            return {user_id: int(total or 0) for user_id, total in rows.all()}

    async def set_token_budget(self, name: str, tokens: int | None) -> None:
        """Set the user's own budget per period (0: unlimited), or with None follow the default again."""
        async with self._write() as session:
            result = await session.execute(update(User).where(User.name == name).values(token_budget=tokens))
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"no user named {name!r}")
