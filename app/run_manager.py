"""Starts agent runs detached from any HTTP connection, cancels them, and serves their event streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp

from agent.approval import ApprovalPolicy, unanswered_calls
from agent.context import AgentContext
from agent.graph import run_agent
from agent.messages import ChatMessage
from app.agent_factory import agent_context
from app.approvals import Resume, not_waiting, tool_policy, waited_ms
from app.attachments.run_documents import TOOL_NAMES as DOCUMENT_TOOLS
from app.attachments.run_documents import ConversationDocuments
from app.db.models import Message
from app.errors import Conflict, InvalidRequest
from app.event_log import RunEventLog
from app.history import to_history
from app.log_context import run_id_var
from app.metrics import Metrics
from app.replica_client import Hop, OwnerUnreachable, ReplicaRouter
from app.run_recorder import (
    DATABASE_DOWN_MESSAGE,
    INTERNAL_ERROR_MESSAGE,
    RunRecorder,
    RunStorageFailed,
)
from app.settings import Settings
from app.store import DATABASE_ERRORS, Store, describe_database_error
from app.store_tree import ACTIVE_LEAF, ParentChoice
from app.usage import UsageMeter
from backends.client.config import BackendConfig
from backends.client.errors import BackendError
from backends.client.registry import BackendRegistry
from protocol.run_events import TERMINAL_EVENT, RunEvent
from tools.base import Tool
from tools.catalog import ToolCatalog, offered_tools

log = logging.getLogger(__name__)

STORED_POLL_S = 0.2
PAUSED_POLL_S = 0.5
"""How often a stream of a run paused for approvals looks whether it resumed elsewhere (it may wait
for minutes: slower than a running run's)."""
ORPHAN_HEARTBEATS = 5
INTERRUPTED_MESSAGE = "The server running this answer stopped before it finished."
STORE_RETRY_FIRST_S = 0.25
STORE_RETRY_MAX_S = 2.0


@dataclass(slots=True)
class ActiveRun:
    task: asyncio.Task[None]
    log: RunEventLog
    recorder: RunRecorder


class _Outage:
    """Logs a database activity that fails once when it starts failing and once when it works again,
    not at every attempt: the loops that retry it run several times a second."""

    def __init__(self, activity: str) -> None:
        self.activity = activity
        self._since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            if isinstance(exc, DATABASE_ERRORS):
                reason = describe_database_error(exc)
                log.warning("%s failed (%s); retrying until the database answers", self.activity, reason)
            else:  # not the database's state, but a bug: its traceback, once
                log.warning("%s failed; retrying", self.activity, exc_info=exc)

    def succeeded(self) -> None:
        if self._since is not None:
            log.info("%s works again, after %.1f s", self.activity, time.monotonic() - self._since)
            self._since = None


class RunManager:
    """Owns the runs of this process. Lives for the app's lifespan."""

    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        tools: ToolCatalog,
        settings: Settings,
        metrics: Metrics,
        replicas: ReplicaRouter,
        usage: UsageMeter,
        *,
        documents: ConversationDocuments | None = None,
    ) -> None:
        self.usage = usage
        self.documents = documents
        """The conversations' attachments, for the runs (documents in messages, `search_documents`)."""
        self.metrics = metrics
        self.replicas = replicas
        self.me = replicas.me
        self.store = store
        self.registry = registry
        self.tools = tools
        self.settings = settings
        self._active: dict[str, ActiveRun] = {}
        self._flush_lock = asyncio.Lock()
        self._shutting_down = False
        self._pending: dict[str, RunRecorder] = {}
        """Runs that ended while the database failed: their ends, kept in memory until stored."""
        self._pending_added = asyncio.Event()
        self._storage_outage = _Outage("storing runs")
        self._heartbeat_outage = _Outage("the runs' heartbeat")
        self._paused_streams: dict[str, asyncio.Event] = {}
        """Streams of runs paused for approvals, parked here until the run resumes on this replica."""

    @property
    def active_count(self) -> int:
        return len(self._active)

    async def start(
        self,
        conversation_id: str,
        user_id: str,
        content: str | None,
        backend: str | None,
        parent_id: ParentChoice = ACTIVE_LEAF,
        *,
        allow_ask: bool = True,
        attachment_ids: Sequence[str] = (),
    ) -> tuple[str, int, str]:
        """Store the user's message after `parent_id` (default: the active leaf) and start answering it
        (with `content` None: answer the active path's last question again, beside its previous answer).
        The run's messages follow it, each becoming the active leaf. With `allow_ask` False (a caller
        that cannot ask its user, like `/mcp`) tools that need approval are not offered.
        Returns (run id, user message id, backend)."""
        conversation = await self.store.get_conversation(conversation_id, user_id)
        require_backend_choice(self.registry, backend)
        await self.usage.check(user_id)
        name = backend or conversation.backend
        # A conversation may remember a backend that was since removed from the backends file.
        choice = name if name and self.registry.is_choice(name) else self.registry.default
        await self._store_ends_before_start(conversation_id)
        # The user's run limit is checked by `start_run`, atomically with the insert.
        run, message = await self.store.start_run(
            conversation_id,
            user_id,
            choice,
            content,
            max_running=self.settings.max_concurrent_runs,
            owner=self.me,
            parent_id=parent_id,
            attachment_ids=attachment_ids,
        )
        # The conversation's tools as of now: MCP servers come and go, so each run asks the catalog.
        offered = offered_tools(self.tools, conversation.tools, allow_ask=allow_ask)
        tools = {name: entry.tool for name, entry in offered.items()}
        event_log = RunEventLog(run.id)
        recorder = RunRecorder(
            self.store,
            event_log,
            run_id=run.id,
            conversation_id=conversation_id,
            backend=choice,
            metrics=self.metrics,
            known_tools=frozenset(tools) | DOCUMENT_TOOLS,
            tool_servers={name: entry.server for name, entry in offered.items()},
            on_usage=self.usage.sink(user_id),
        )
        recorder.started_event()
        task = asyncio.create_task(self._execute(recorder, tools), name=f"run-{run.id}")
        task.add_done_callback(_report_crash)
        self._active[run.id] = ActiveRun(task, event_log, recorder)
        return run.id, message.id, choice

    async def _store_ends_before_start(self, conversation_id: str) -> None:
        """Store the kept ends of runs first: their stale `running` rows would refuse a new message in
        their conversation, and count against their user's run limit."""
        if not self._pending:
            return
        await self._store_pending()
        if any(r.conversation_id == conversation_id for r in self._pending.values()):
            raise Conflict(
                "the previous answer in this conversation is not saved yet: the database is not "
                "answering; try again in a moment",
                code="run_in_progress",
                headers={"Retry-After": "2"},
            )

    async def _execute(
        self, recorder: RunRecorder, tools: Mapping[str, Tool], resume: Resume | None = None
    ) -> None:
        run_id_var.set(recorder.run_id)  # this task's own context: every log line of the run carries it
        try:
            client, answerer = self.registry.route(recorder.backend)
            try:
                stored, _ = await self.store.active_path(recorder.conversation_id)
                attached, tools = await self._documents(
                    recorder.conversation_id, client.config, stored, tools
                )
            except DATABASE_ERRORS as exc:
                raise RunStorageFailed("the database did not give the conversation's history") from exc
            context = agent_context(self.registry, client, answerer, tools, self.settings, recorder)
            history, context = self._with_approvals(recorder, context, stored, resume, attached)
            if resume is not None and resume.cancelled:
                await recorder.cancelled_while_waiting(unanswered_calls(history))
            else:
                steps = resume.steps if resume else 0
                result = await run_agent(context, history, resume=resume is not None, steps=steps)
                await recorder.completed(result)
        except asyncio.CancelledError:
            await recorder.cancelled(interrupted=self._shutting_down)
        except BackendError as exc:
            # The cause is aiohttp's own error, class and all: for the log, not for the user.
            log.warning("run failed: %s (%r)", exc, exc.__cause__)
            self.metrics.backend_errors.labels(exc.backend, exc.kind).inc()
            await recorder.failed(exc.code, exc.user_message)
        except RunStorageFailed as exc:
            cause = f" ({describe_database_error(exc.__cause__)})" if exc.__cause__ else ""
            log.warning("run stopped: %s%s", exc, cause)
            await recorder.failed("database_unavailable", DATABASE_DOWN_MESSAGE)
        except Exception:
            log.exception("run failed")
            await recorder.failed("internal_error", INTERNAL_ERROR_MESSAGE)
        finally:
            await self._conclude(recorder)

    async def _documents(
        self,
        conversation_id: str,
        config: BackendConfig,
        stored: Sequence[Message],
        tools: Mapping[str, Tool],
    ) -> tuple[dict[int, str], Mapping[str, Tool]]:
        """The conversation's attachments for this run (app/attachments/run_documents.py): the user
        messages that reference documents, with them added, and the tool that searches them."""
        if self.documents is None:
            return {}, tools
        questions = {m.id: m.content for m in stored if m.role == "user"}
        found = await self.documents.for_run(conversation_id, config, questions)
        return found.attached, {**tools, **found.tools}

    # approval before a tool acts (app/approvals.py): pausing, resuming, deciding

    def _with_approvals(
        self,
        recorder: RunRecorder,
        context: AgentContext,
        stored: Sequence[Message],
        resume: Resume | None,
        attached: Mapping[int, str],
    ) -> tuple[list[ChatMessage], AgentContext]:
        """The history the agent continues from and its context, with which offered tools ask first;
        for a resumed run, its waiting calls left open and what the user decided on them."""
        policy = tool_policy(self.tools, context.tools)
        recorder.approval_timeout_s = self.settings.approval_timeout_s
        decisions = resume.decisions if resume else {}
        history = to_history(stored, waiting=decisions.keys(), attached=attached)
        if resume is not None:
            waiting = {call.id for call in unanswered_calls(history)}
            for approval in resume.approvals:
                if approval.call_id in waiting:
                    approved = approval.status == "approved"
                    by, reason = approval.decided_by, approval.reason
                    recorder.approval_resolved(approval.call_id, approved, by, reason, waited_ms(approval))
        return history, replace(context, approvals=ApprovalPolicy(policy.ask, decisions))

    async def resume_paused(self, run_id: str) -> bool:
        """Take up a paused run whose calls are all decided and run the rest of it here, streaming
        into the same event log: from an approval, the sweeper or a cancel, on whichever replica got
        it. False if a call still waits, or another replica took the run first."""
        paused = await self.store.claim_paused_run(run_id, self.me)
        if paused is None:
            return False
        run = paused.run
        conversation = await self.store.get_conversation(run.conversation_id, None)
        offered = offered_tools(self.tools, conversation.tools)
        tools = {name: entry.tool for name, entry in offered.items()}
        event_log = RunEventLog(run.id, start_after=paused.last_seq)
        recorder = RunRecorder(
            self.store,
            event_log,
            run_id=run.id,
            conversation_id=run.conversation_id,
            backend=run.backend,
            metrics=self.metrics,
            known_tools=frozenset(tools) | DOCUMENT_TOOLS,
            tool_servers={name: entry.server for name, entry in offered.items()},
            on_usage=self.usage.sink(paused.user_id),
        )
        recorder.resumed(run, run.approval_wait_ms)
        resume = Resume(run.llm_calls, paused.approvals)
        task = asyncio.create_task(self._execute(recorder, tools, resume), name=f"run-{run.id}")
        task.add_done_callback(_report_crash)
        self._active[run.id] = ActiveRun(task, event_log, recorder)
        waker = self._paused_streams.pop(run.id, None)
        if waker is not None:
            waker.set()
        return True

    async def decide(self, run_id: str, call_id: str, *, approve: bool, by: str, reason: str | None) -> str:
        """Record the user's decision on a call that waits (`Conflict` if it does not); once none of
        the run's calls waits, resume it here. Returns the run's status."""
        if not await self.store.decide_approval(run_id, call_id, approved=approve, by=by, reason=reason):
            raise not_waiting(call_id)
        # Not ready if another call waits, or if the run still finishes this turn's other calls: it
        # resumes itself once paused (see `_resume_after_pause`).
        await self.resume_paused(run_id)
        return await self._status(run_id)

    async def _resume_after_pause(self, recorder: RunRecorder) -> None:
        """A run's pause is stored: its calls may have been decided while it finished the turn."""
        try:
            await self.resume_paused(recorder.run_id)
        except Exception as exc:  # the sweeper retries within a second
            log.warning("could not resume run %s at once: %r", recorder.run_id, exc)

    async def _drop_requests(self, recorder: RunRecorder) -> None:
        """The run ended (stopped, failed) before it paused: its requests no longer wait."""
        try:
            await self.store.cancel_approvals(recorder.run_id, "")
        except DATABASE_ERRORS as exc:  # they only wait for the sweeper to deny them
            log.warning("could not close the run's approval requests: %s", describe_database_error(exc))

    async def _cancel_paused(self, run_id: str, by: str, hop: Hop, wait_s: float) -> str:
        """Stop a run that waits for approvals: its calls are cancelled and it ends here, as cancelled."""
        await self.store.cancel_approvals(run_id, by)
        if not await self.resume_paused(run_id):
            run = await self.store.get_run(run_id)
            if run.status in ("running", "awaiting_approval"):  # taken up elsewhere just before
                return await self.cancel(run_id, hop, wait_s)
            return run.status
        active = self._active.get(run_id)
        if active is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(active.task), wait_s)
        return await self._status(run_id)

    async def _conclude(self, recorder: RunRecorder) -> None:
        """End the run whatever fails: store its end (or keep it for `store_pending_forever`), then end
        its event stream with `run.finished`."""
        stored = False
        try:
            recorder.abandon("internal_error", INTERNAL_ERROR_MESSAGE)  # only if ending it went wrong
            if not recorder.database_down:  # it just failed: the retries take over at once
                try:
                    await self._store_end(recorder)
                    stored = True
                    self._storage_outage.succeeded()
                except Exception as exc:
                    self._storage_outage.failed(exc)
        finally:
            recorder.abandon("internal_error", INTERNAL_ERROR_MESSAGE)
            outcome = recorder.outcome
            assert outcome is not None
            if not outcome.announced:
                recorder.log.append(TERMINAL_EVENT, outcome.finished)
                outcome.announced = True
            recorder.log.close()
            self._active.pop(recorder.run_id, None)
            if not stored:
                self._pending[recorder.run_id] = recorder
                self._pending_added.set()
        if stored and outcome.status == "awaiting_approval":
            await self._resume_after_pause(recorder)
        elif stored and recorder.asked:
            await self._drop_requests(recorder)

    async def _store_end(self, recorder: RunRecorder) -> None:
        """Store what the run's end still owes the database, in one transaction (raises if it fails).

        The run's status is committed before `run.finished` reaches its stream: a client that reads
        the run after its stream has ended finds it ended.
        """
        outcome = recorder.outcome
        assert outcome is not None
        async with self._flush_lock:  # the periodic batch must not write the same events
            if outcome.stored:
                return
            batch = recorder.log.unflushed()
            finished = None if outcome.announced else recorder.log.upcoming(TERMINAL_EVENT, outcome.finished)
            records = batch + ([finished] if finished else [])
            kept = await self.store.save_outcome(
                recorder.run_id,
                outcome.fields,
                recorder.unsaved,
                recorder.log.rows(records),
                recorder.approvals if outcome.status == "awaiting_approval" else (),
            )
            recorder.approvals = []
            outcome.stored = True
            recorder.unsaved = []
            if finished is not None:
                # Nothing else appends to a run's log once its agent returned: this gets the same id.
                recorder.log.append(finished.type, finished.data)
                outcome.announced = True
            if records:
                recorder.log.mark_flushed(records[-1].id)
        if not kept:
            log.warning(
                "run %s was ended elsewhere meanwhile (its owner looked dead to another replica, or its "
                "conversation was deleted): that end stands",
                recorder.run_id,
            )

    async def _store_pending(self) -> bool:
        """Try to store the kept ends of runs; whether none is left."""
        for run_id, recorder in list(self._pending.items()):
            try:
                await self._store_end(recorder)
            except DATABASE_ERRORS as exc:
                self._storage_outage.failed(exc)
                return False
            except Exception:  # not the database's state: retrying would not help
                log.exception("could not store the end of run %s; it is lost", run_id)
            else:
                self._storage_outage.succeeded()
            self._pending.pop(run_id, None)
        return True

    async def store_pending_forever(self) -> None:
        """Store the ends of runs kept in memory while the database failed, retrying with backoff until
        it answers again (a lifespan task)."""
        delay = STORE_RETRY_FIRST_S
        while True:
            if not self._pending:
                self._pending_added.clear()
                await self._pending_added.wait()
                delay = STORE_RETRY_FIRST_S
            await asyncio.sleep(delay)
            delay = STORE_RETRY_FIRST_S if await self._store_pending() else min(delay * 2, STORE_RETRY_MAX_S)

    async def flush_forever(self) -> None:
        """Write every running run's new events to the database in one batch, every `event_flush_s`
        (a lifespan task): one transaction for all runs, however many there are."""
        while True:
            await asyncio.sleep(self.settings.event_flush_s)
            await self._flush([a.log for a in list(self._active.values())])

    async def _flush(self, logs: list[RunEventLog]) -> None:
        # One flush at a time: the periodic batch and a finishing run must not write the same events.
        async with self._flush_lock:
            await self._flush_now(logs)

    async def _flush_now(self, logs: list[RunEventLog]) -> None:
        # A closed log's last events go with the end of its run, in one transaction (`_store_end`).
        batches = [(event_log, event_log.unflushed()) for event_log in logs if not event_log.closed]
        rows = [row for event_log, batch in batches for row in event_log.rows(batch)]
        if not rows:
            return
        try:
            await self.store.add_events(rows)
        except Exception as exc:  # kept in memory and retried with the next batch
            self._storage_outage.failed(exc)
            return
        self._storage_outage.succeeded()
        for event_log, batch in batches:
            if batch:
                event_log.mark_flushed(batch[-1].id)

    async def cancel(self, run_id: str, hop: Hop, wait_s: float = 10.0, by: str = "") -> str:
        """Stop a run wherever it runs; returns its status. Stopping a finished run just reports it."""
        active = self._active.get(run_id)
        if active is None:
            if run_id in self._pending:
                await self._store_pending()
                return await self._status(run_id)
            run = await self.store.get_run(run_id)
            if run.status == "awaiting_approval":
                return await self._cancel_paused(run_id, by, hop, wait_s)
            owner = self.replicas.owner_to_ask(run.status, run.owner, hop)
            if owner is not None:
                try:
                    await self.replicas.cancel(owner, run_id, hop)
                except OwnerUnreachable:
                    await self._claim_if_orphaned(run_id)
            elif run.status == "running":
                await self._claim_if_orphaned(run_id)
            return (await self.store.get_run(run_id)).status
        if not active.task.cancelling():  # a second cancel would cut the first one's ending short
            active.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(active.task), wait_s)
        return await self._status(run_id)

    async def _status(self, run_id: str) -> str:
        pending = self._pending.get(run_id)
        if pending is not None and pending.outcome is not None:
            return pending.outcome.status
        return (await self.store.get_run(run_id)).status

    async def cancel_conversation(self, conversation_id: str, hop: Hop) -> None:
        """Stop the conversation's running answer, on whichever replica it runs."""
        run_id = await self.store.active_run_id(conversation_id)
        if run_id is not None:
            await self.cancel(run_id, hop)

    async def events(self, run_id: str, after: int, hop: Hop) -> AsyncIterator[RunEvent]:
        """The run's events after `after`: live from memory if it runs here, relayed live from the
        replica that runs it, or from the database once it has ended. A run that pauses for tool
        approvals goes on in the same stream once it resumes, on this replica or another."""
        position = after
        followed: RunEventLog | None = None
        while True:
            active = self._active.get(run_id)
            in_memory = active.recorder if active is not None else self._pending.get(run_id)
            if in_memory is not None and in_memory.log is not followed:
                followed = in_memory.log
                # A resumed run's log starts after the events stored before its pause.
                while position < followed.start_after:
                    rows = await self.store.events_after(run_id, position, followed.start_after - position)
                    if not rows:
                        break
                    for row in rows:
                        position = row.seq
                        yield RunEvent(row.seq, row.type, row.data)
                async for record in in_memory.log.follow(position):
                    position = record.id
                    yield record
                    if record.type == TERMINAL_EVENT:
                        return
                continue  # its log closed before the end: the run paused (or its end is kept)
            run = await self.store.get_run(run_id)  # 404 for unknown ids
            owner = self.replicas.owner_to_ask(run.status, run.owner, hop)
            if owner is not None:
                try:
                    async for record in self.replicas.events(owner, run_id, position, hop):
                        position = record.id
                        yield record
                        if record.type == TERMINAL_EVENT:
                            return
                except (OwnerUnreachable, aiohttp.ClientError, ValueError) as exc:
                    log.warning("owner %s of run %s stopped answering: %s", owner, run_id, exc)
            async for stored in self._stored_events(run_id, position, hop):
                if stored is None:  # it resumed after a pause: follow it live again
                    break
                position = stored.id
                yield stored
            else:
                return

    async def _stored_events(self, run_id: str, position: int, hop: Hop) -> AsyncIterator[RunEvent | None]:
        """The run's stored events after `position` until its end; None (and no more) when a run that
        was seen paused runs again, here or on a replica to relay from."""
        was_paused = False
        while True:
            rows = await self.store.events_after(run_id, position)
            for row in rows:
                position = row.seq
                yield RunEvent(row.seq, row.type, row.data)
                if row.type == TERMINAL_EVENT:
                    return
            if rows:
                continue
            run = await self.store.get_run(run_id)
            if run.status == "awaiting_approval":
                was_paused = True
                # Woken at once if the run resumes here; a resume elsewhere shows at the next look.
                waker = self._paused_streams.setdefault(run_id, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.wait(), PAUSED_POLL_S)
                continue
            if was_paused:
                self._paused_streams.pop(run_id, None)
            resumed = run_id in self._active or self.replicas.owner_to_ask(run.status, run.owner, hop)
            if was_paused and resumed:
                yield None
                return
            if run.status != "running":
                # The status may have changed together with the final events: read them once more.
                if not await self.store.events_after(run_id, position, limit=1):
                    return
                continue
            if await self._claim_if_orphaned(run_id):
                continue
            await asyncio.sleep(STORED_POLL_S)

    def _stale_before(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=ORPHAN_HEARTBEATS * self.settings.heartbeat_s)

    async def _claim_if_orphaned(self, run_id: str) -> bool:
        """End a run whose owner stopped heartbeating, keeping what it had streamed."""
        return await self.store.interrupt_run(run_id, INTERRUPTED_MESSAGE, stale_before=self._stale_before())

    async def recover_orphans(self) -> int:
        """At start-up: end runs this process owned before it restarted, and runs of dead replicas."""
        count = 0
        for run_id in await self.store.orphaned_runs(self.me, self._stale_before()):
            run = await self.store.get_run(run_id)
            stale_before = None if run.owner in (self.me, None) else self._stale_before()
            count += await self.store.interrupt_run(run_id, INTERRUPTED_MESSAGE, stale_before=stale_before)
        return count

    async def heartbeat_forever(self) -> None:
        """Tell the other replicas this process still runs its runs (a lifespan task)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                # Kept ends count as running here: the retries store them, no replica must claim them.
                await self.store.heartbeat([*self._active, *self._pending])
            except Exception as exc:  # the next beat retries; a missed one only risks a false orphan later
                self._heartbeat_outage.failed(exc)
            else:
                self._heartbeat_outage.succeeded()

    async def shutdown(self, grace_s: float) -> None:
        """Let running answers finish for up to `grace_s`, then stop the rest as interrupted."""
        tasks = [a.task for a in self._active.values()]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        self._shutting_down = True
        for active in list(self._active.values()):
            if not active.task.cancelling():
                active.task.cancel()
        remaining = [a.task for a in self._active.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=10)
        if self._pending and not await self._store_pending():
            log.error(
                "the database is not answering: the ends of %d run(s) are lost; after a restart they "
                "show as interrupted, with what was stored of them",
                len(self._pending),
            )


def _report_crash(task: asyncio.Task[None]) -> None:
    """Log a run task that died of an exception (it never should): nothing else awaits it."""
    if not task.cancelled() and task.exception() is not None:
        log.error("run task %s failed", task.get_name(), exc_info=task.exception())


def require_backend_choice(registry: BackendRegistry, backend: str | None) -> None:
    """Refuse (422) a backend name that is neither in the backends file nor `auto`."""
    if backend is not None and not registry.is_choice(backend):
        raise InvalidRequest(
            f"unknown backend {backend!r}; known backends: {', '.join(registry.choices())}",
            code="unknown_backend",
        )
