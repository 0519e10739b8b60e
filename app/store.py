"""Reads and writes of conversations, messages, runs and run events. The only module that queries SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.attachments.store import link_attachments
from app.db.models import Conversation, Message, Run, RunEvent, TokenUsage, ToolApproval, User
from app.errors import Conflict, NotFound, TooManyRequests
from app.message_tree import MessageTree
from app.search_query import Term
from app.store_search import SearchOrder, SearchPage, search_messages
from app.store_tree import (
    ACTIVE_LEAF,
    ParentChoice,
    active_path,
    append_messages,
    load_tree,
    question_to_answer_again,
    resolve_parent,
    select_branch,
)
from protocol import run_events

ACTIVE_RUN_STATUSES = ("running", "awaiting_approval")
"""Runs that hold their conversation (see `Run`'s unique index)."""
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


async def _insert_approvals(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `tool_approvals` rows; one already there (a model that repeats a call id) is kept as is:
    a key conflict would otherwise look like a database outage, retried forever."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ToolApproval)
    await session.execute(statement.on_conflict_do_nothing(), list(rows))


@dataclass(frozen=True, slots=True)
class PausedRun:
    """A run taken up again after its tool approvals were decided (`Store.claim_paused_run`)."""

    run: Run
    user_id: str
    last_seq: int
    """Its last stored event: the resumed stream goes on after it."""
    approvals: list[ToolApproval]


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

    def writing(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A write transaction queued like the store's own, for the modules that own other tables
        (`app.attachments.store`)."""
        return self._write()

    def reading(self) -> AsyncSession:
        """A session for reads, for the modules that own other tables."""
        return self._sessions()

    # conversations: every read and write is scoped to the user, so another user's ids are simply not found

    async def create_conversation(
        self, user_id: str, title: str | None, backend: str | None, tools: list[str] | None = None
    ) -> Conversation:
        async with self._write() as session:
            row = Conversation(user_id=user_id, title=title or "New chat", backend=backend, tools=tools)
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
        """Store messages (column values) in one transaction, in order, each after its conversation's
        active leaf, which moves to it; returns their ids."""
        async with self._write() as session:
            return [row.id for row in await append_messages(session, rows)]

    async def active_path(self, conversation_id: str) -> tuple[list[Message], MessageTree]:
        """The messages shown and continued (first message to active leaf), and the conversation's tree
        (for each message's alternatives)."""
        async with self._sessions() as session:
            return await active_path(session, conversation_id)

    async def message_tree(self, conversation_id: str) -> MessageTree:
        async with self._sessions() as session:
            return await load_tree(session, conversation_id)

    async def select_branch(self, conversation_id: str, user_id: str, message_id: int) -> Conversation:
        """Make the branch through `message_id` the active one (down to its newest message).
        `NotFound` for a message of another conversation; `Conflict` while an answer is running."""
        async with self._write() as session:
            row = await session.get(Conversation, conversation_id, with_for_update=True)
            if row is None or row.user_id != user_id:
                raise NotFound(f"conversation {conversation_id} not found")
            # A paused run (awaiting a tool approval) holds its conversation too: it resumes at the leaf.
            running = await session.scalar(
                select(Run.id)
                .where(
                    Run.conversation_id == conversation_id,
                    Run.status.in_(ACTIVE_RUN_STATUSES),
                )
                .limit(1)
            )
            await select_branch(session, row, message_id, running is not None)
        return row

    async def search_messages(
        self, user_id: str, terms: Sequence[Term], *, order: SearchOrder, limit: int, offset: int
    ) -> SearchPage:
        """The user's user and assistant messages matching `terms` (see `app.store_search`)."""
        async with self._sessions() as session:
            return await search_messages(session, user_id, terms, order=order, limit=limit, offset=offset)

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
        parent_id: ParentChoice = ACTIVE_LEAF,
        attachment_ids: Sequence[str] = (),
    ) -> tuple[Run, Message]:
        """Create a running run and its user message (referencing `attachment_ids`) in one transaction.

        The message follows `parent_id` (default: the active leaf; None: a new first message), and
        becomes the active leaf: a parent other than the leaf starts a new branch (an edit).
        With `content` None the run answers the last question of the active path again instead: its
        previous answer stays, as an alternative to the new one.
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
                    message = await question_to_answer_again(session, conversation)
                    has_messages: int | None = 1
                else:
                    has_messages = await session.scalar(
                        select(func.count())
                        .select_from(Message)
                        .where(Message.conversation_id == conversation_id)
                    )
                    message = Message(
                        conversation_id=conversation_id,
                        parent_id=await resolve_parent(session, conversation, parent_id),
                        run_id=run.id,
                        role="user",
                        content=content,
                        backend=backend,
                    )
                    session.add(message)
                    await session.flush()
                    conversation.active_leaf_id = message.id
                    await link_attachments(session, conversation_id, message.id, attachment_ids)
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
            # A run paused for a tool approval is active too: the UI follows it to show the request.
            return await session.scalar(
                select(Run.id).where(
                    Run.conversation_id == conversation_id, Run.status.in_(ACTIVE_RUN_STATUSES)
                )
            )

    async def save_outcome(
        self,
        run_id: str,
        run_fields: dict[str, Any],
        messages: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
        approvals: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Store the end of a run in one transaction: the run's final columns, the messages it could
        not store while it ran, and its events not stored yet; for a run that pauses for tool
        approvals (status `awaiting_approval`), the `tool_approvals` rows it waits on.

        Returns False, storing nothing, when the run is no longer running: another replica ended it
        as orphaned meanwhile, or its conversation was deleted. That stored end stands.
        """
        async with self._write() as session:
            result = await session.execute(
                update(Run).where(Run.id == run_id, Run.status == "running").values(**run_fields)
            )
            if not getattr(result, "rowcount", 0):
                return False
            await append_messages(session, messages)
            if events:
                await session.execute(insert(RunEvent), list(events))
            await _insert_approvals(session, approvals)
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
                fields = {
                    "conversation_id": run.conversation_id,
                    "run_id": run_id,
                    "role": "assistant",
                    "content": partial,
                    "status": "interrupted",
                    "backend": run.backend,
                }
                (row,) = await append_messages(session, [fields])
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

    # tool approvals: a paused run's calls, decided by the user, by the timeout or by a cancel

    async def approvals_of(self, run_id: str) -> Sequence[ToolApproval]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ToolApproval).where(ToolApproval.run_id == run_id).order_by(ToolApproval.created_at)
            )
            return rows.all()

    async def add_approvals(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store calls a running run asks about (`tool_approvals` rows, status `pending`)."""
        async with self._write() as session:
            await _insert_approvals(session, rows)

    async def decide_approval(
        self, run_id: str, call_id: str, *, approved: bool, by: str, reason: str | None
    ) -> bool:
        """Record the decision on a call that waits; False if it does not wait (decided already, or
        no such call)."""
        async with self._write() as session:
            result = await session.execute(
                update(ToolApproval)
                .where(
                    ToolApproval.run_id == run_id,
                    ToolApproval.call_id == call_id,
                    ToolApproval.status == "pending",
                )
                .values(
                    status="approved" if approved else "denied",
                    decided_by=by,
                    reason=reason,
                    decided_at=datetime.now(UTC),
                )
            )
            return bool(getattr(result, "rowcount", 0))

    async def expire_approvals(self, now: datetime, reason: str) -> int:
        """Deny every call whose wait is over; how many."""
        async with self._write() as session:
            result = await session.execute(
                update(ToolApproval)
                .where(ToolApproval.status == "pending", ToolApproval.expires_at <= now)
                .values(status="denied", decided_by="timeout", reason=reason, decided_at=now)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def cancel_approvals(self, run_id: str, by: str) -> None:
        """The run is stopped while it waits: its calls will not run."""
        async with self._write() as session:
            await session.execute(
                update(ToolApproval)
                .where(ToolApproval.run_id == run_id, ToolApproval.status == "pending")
                .values(status="cancelled", decided_by=by, reason="cancelled", decided_at=datetime.now(UTC))
            )

    async def runs_ready_to_resume(self) -> list[str]:
        """Paused runs whose every call is decided, and that no replica took up yet."""
        pending = select(ToolApproval.run_id).where(
            ToolApproval.run_id == Run.id, ToolApproval.status == "pending"
        )
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Run.id).where(Run.status == "awaiting_approval", ~pending.exists())
            )
            return list(rows.all())

    async def claim_paused_run(self, run_id: str, owner: str) -> PausedRun | None:
        """Take up a paused run whose calls are all decided, to execute its rest here: it is running
        again, owned by `owner`. None if another replica took it first, or a call still waits.
        Atomic across replicas: the status flip decides."""
        now = datetime.now(UTC)
        async with self._write() as session:
            run = await session.get(Run, run_id)
            if run is None or run.status != "awaiting_approval":
                return None
            waited_ms = max(0.0, (now - run.paused_at).total_seconds() * 1000) if run.paused_at else 0.0
            pending = select(ToolApproval.run_id).where(
                ToolApproval.run_id == run_id, ToolApproval.status == "pending"
            )
            result = await session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "awaiting_approval", ~pending.exists())
                .values(
                    status="running",
                    owner=owner,
                    heartbeat_at=now,
                    paused_at=None,
                    approval_wait_ms=round((run.approval_wait_ms or 0.0) + waited_ms, 2),
                )
                .execution_options(synchronize_session=False)
            )
            if not getattr(result, "rowcount", 0):
                return None
            await session.refresh(run)
            user_id = await session.scalar(
                select(Conversation.user_id).where(Conversation.id == run.conversation_id)
            )
            last_seq = await session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id))
            approvals = (
                await session.scalars(select(ToolApproval).where(ToolApproval.run_id == run_id))
            ).all()
        return PausedRun(run, str(user_id), int(last_seq or 0), list(approvals))
