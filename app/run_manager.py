"""Starts agent runs detached from any HTTP connection, cancels them, and serves their event streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from agent.graph import run_agent
from app.agent_factory import agent_context
from app.errors import InvalidRequest, TooManyRequests
from app.event_log import TERMINAL_EVENT, RunEventLog, RunEventRecord
from app.history import to_history
from app.log_context import run_id_var
from app.metrics import Metrics
from app.replica_client import OwnerUnreachable, ReplicaClient
from app.run_recorder import RunRecorder
from app.settings import Settings
from app.store import Store
from backends.errors import BackendError
from backends.registry import BackendRegistry
from tools.base import Tool

log = logging.getLogger(__name__)

STORED_POLL_S = 0.2
ORPHAN_HEARTBEATS = 5
INTERRUPTED_MESSAGE = "The server running this answer stopped before it finished."


@dataclass(slots=True)
class ActiveRun:
    task: asyncio.Task[None]
    log: RunEventLog
    recorder: RunRecorder


class RunManager:
    """Owns the runs of this process. Lives for the app's lifespan."""

    def __init__(
        self,
        store: Store,
        registry: BackendRegistry,
        tools: Mapping[str, Tool],
        settings: Settings,
        metrics: Metrics,
        replicas: ReplicaClient,
    ) -> None:
        self.metrics = metrics
        self.replicas = replicas
        self.me = settings.resolved_advertise_url()
        self.store = store
        self.registry = registry
        self.tools = tools
        self.settings = settings
        self._active: dict[str, ActiveRun] = {}
        self._flush_lock = asyncio.Lock()
        self._shutting_down = False

    @property
    def active_count(self) -> int:
        return len(self._active)

    async def start(
        self, conversation_id: str, user_id: str, content: str | None, backend: str | None
    ) -> tuple[str, int, str]:
        """Store the user's message and start answering it (with `content` None: answer the last
        question again, replacing its answer). Returns (run id, user message id, backend)."""
        conversation = await self.store.get_conversation(conversation_id, user_id)
        if await self.store.running_runs_of(user_id) >= self.settings.max_concurrent_runs:
            raise TooManyRequests(
                f"you already have {self.settings.max_concurrent_runs} answers running; wait for one",
                code="too_many_runs",
                headers={"Retry-After": "5"},
            )
        require_backend_choice(self.registry, backend)
        name = backend or conversation.backend
        # A conversation may remember a backend that was since removed from the backends file.
        choice = name if name and self.registry.is_choice(name) else self.registry.default
        run, message = await self.store.start_run(conversation_id, choice, content, owner=self.me)
        event_log = RunEventLog(run.id)
        recorder = RunRecorder(
            self.store,
            event_log,
            run_id=run.id,
            conversation_id=conversation_id,
            backend=choice,
            metrics=self.metrics,
            known_tools=frozenset(self.tools),
        )
        recorder.started_event()
        task = asyncio.create_task(self._execute(recorder), name=f"run-{run.id}")
        self._active[run.id] = ActiveRun(task, event_log, recorder)
        return run.id, message.id, choice

    async def _execute(self, recorder: RunRecorder) -> None:
        run_id_var.set(recorder.run_id)  # this task's own context: every log line of the run carries it
        try:
            client, answerer = self.registry.route(recorder.backend)
            history = to_history(await self.store.messages(recorder.conversation_id))
            context = agent_context(self.registry, client, answerer, self.tools, self.settings, recorder)
            result = await run_agent(context, history)
            await recorder.completed(result)
        except asyncio.CancelledError:
            await recorder.cancelled(interrupted=self._shutting_down)
        except BackendError as exc:
            log.warning("run failed: %s", exc)
            self.metrics.backend_errors.labels(exc.backend, exc.kind).inc()
            await recorder.failed(f"backend_{exc.kind}", _backend_message(exc))
        except Exception:
            log.exception("run failed")
            await recorder.failed(
                "internal_error", "chatstack hit an internal error while answering; see the server log."
            )
        finally:
            await self._flush([recorder.log])
            recorder.log.close()
            self._active.pop(recorder.run_id, None)

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
        batches = [(event_log, event_log.unflushed()) for event_log in logs]
        rows = [
            {"run_id": event_log.run_id, "seq": e.seq, "type": e.type, "data": e.data}
            for event_log, batch in batches
            for e in batch
        ]
        if not rows:
            return
        try:
            await self.store.add_events(rows)
        except Exception:  # kept in memory and retried with the next batch
            log.exception("could not store run events")
            return
        for event_log, batch in batches:
            if batch:
                event_log.mark_flushed(batch[-1].seq)

    async def cancel(
        self, run_id: str, wait_s: float = 10.0, *, forwarded: bool = False, authorization: str | None = None
    ) -> str:
        """Stop a run wherever it runs; returns its status. Stopping a finished run just reports it."""
        active = self._active.get(run_id)
        if active is None:
            run = await self.store.get_run(run_id)
            if run.status == "running" and run.owner and run.owner != self.me and not forwarded:
                try:
                    await self.replicas.cancel(run.owner, run_id, authorization)
                except OwnerUnreachable:
                    await self._claim_if_orphaned(run_id)
            elif run.status == "running":
                await self._claim_if_orphaned(run_id)
            return (await self.store.get_run(run_id)).status
        active.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(active.task), wait_s)
        return (await self.store.get_run(run_id)).status

    async def cancel_conversation(self, conversation_id: str, authorization: str | None = None) -> None:
        """Stop the conversation's running answer, on whichever replica it runs."""
        run_id = await self.store.active_run_id(conversation_id)
        if run_id is not None:
            await self.cancel(run_id, authorization=authorization)

    async def events(
        self, run_id: str, after: int, *, forwarded: bool = False, authorization: str | None = None
    ) -> AsyncIterator[RunEventRecord]:
        """The run's events after `after`: live from memory if it runs here, relayed live from the
        replica that runs it, or from the database once it has ended."""
        active = self._active.get(run_id)
        if active is not None:
            async for record in active.log.follow(after):
                yield record
            return
        run = await self.store.get_run(run_id)  # 404 for unknown ids
        position = after
        if run.status == "running" and run.owner and run.owner != self.me and not forwarded:
            try:
                async for record in self.replicas.events(run.owner, run_id, position, authorization):
                    position = record.seq
                    yield record
                    if record.type == TERMINAL_EVENT:
                        return
            except (OwnerUnreachable, aiohttp.ClientError, ValueError) as exc:
                log.warning("owner %s of run %s stopped answering: %s", run.owner, run_id, exc)
        async for record in self._stored_events(run_id, position):
            yield record

    async def _stored_events(self, run_id: str, position: int) -> AsyncIterator[RunEventRecord]:
        while True:
            rows = await self.store.events_after(run_id, position)
            for row in rows:
                position = row.seq
                yield RunEventRecord(row.seq, row.type, row.data)
                if row.type == TERMINAL_EVENT:
                    return
            if rows:
                continue
            run = await self.store.get_run(run_id)
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
                await self.store.heartbeat(list(self._active))
            except Exception:  # the next beat retries; a missed one only risks a false orphan later
                log.exception("heartbeat failed")

    async def shutdown(self, grace_s: float) -> None:
        """Let running answers finish for up to `grace_s`, then stop the rest as interrupted."""
        tasks = [a.task for a in self._active.values()]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        self._shutting_down = True
        for active in list(self._active.values()):
            active.task.cancel()
        remaining = [a.task for a in self._active.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=10)


def require_backend_choice(registry: BackendRegistry, backend: str | None) -> None:
    """Refuse (422) a backend name that is neither in the backends file nor `auto`."""
    if backend is not None and not registry.is_choice(backend):
        raise InvalidRequest(
            f"unknown backend {backend!r}; known backends: {', '.join(registry.choices())}",
            code="unknown_backend",
        )


def _backend_message(exc: BackendError) -> str:
    if exc.kind == "unavailable":
        return f"The backend '{exc.backend}' is not reachable. It may be down or still starting."
    if exc.kind == "timeout":
        return f"The backend '{exc.backend}' did not answer in time."
    if exc.kind == "start_timeout":
        return (
            f"The backend '{exc.backend}' was scaled to zero and did not start in time ({exc.detail}). "
            "Try again in a minute."
        )
    if exc.kind == "unknown_backend":
        return f"There is no backend named '{exc.backend}'."
    return f"The backend '{exc.backend}' failed: {exc.detail}"
