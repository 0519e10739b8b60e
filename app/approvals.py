"""Approval before a tool acts: which offered tools ask first, the user's decisions, and the sweeper
that denies what waited too long.

A run that meets a call of an `ask` tool pauses (agent/approval.py): its task ends with the run's
status `awaiting_approval` and one `tool_approvals` row per waiting call, stored with the assistant
message that asked. Nothing waits in memory, so any replica, before or after a restart, can take the
run up again: the request that decides its last waiting call (or the sweeper, once a call's time is
over, or a cancel) claims it in the database and resumes it here (`RunManager.resume_paused`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.approval import TIMED_OUT_REASON, ApprovalDecision
from app.db.models import ToolApproval
from app.errors import Conflict
from app.store import DATABASE_ERRORS, Store, describe_database_error
from tools.catalog import BUILTIN_SERVER, ToolCatalog

log = logging.getLogger(__name__)

SWEEP_S = 1.0
"""How often each replica looks for calls whose wait is over and for decided runs nobody took up."""
CANCELLED = "cancelled"

ResumeFn = Callable[[str], Awaitable[bool]]
"""`RunManager.resume_paused`: claim a decided paused run and resume it here; whether it did."""


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """Of the tools a run offers: which ask first, and where each comes from."""

    ask: frozenset[str] = frozenset()
    servers: Mapping[str, str] = field(default_factory=dict)


def tool_policy(catalog: ToolCatalog, offered: Iterable[str]) -> ToolPolicy:
    ask: set[str] = set()
    servers: dict[str, str] = {}
    for name in offered:
        entry = catalog.get(name)
        servers[name] = entry.server if entry else BUILTIN_SERVER
        if entry is not None and entry.approval == "ask":
            ask.add(name)
    return ToolPolicy(frozenset(ask), servers)


@dataclass(frozen=True, slots=True)
class Resume:
    """What a paused run resumes with: the decisions on its calls, and its model calls so far."""

    steps: int
    approvals: Sequence[ToolApproval]

    @property
    def decisions(self) -> dict[str, ApprovalDecision]:
        return {
            a.call_id: ApprovalDecision(a.status == "approved", a.reason)
            for a in self.approvals
            if a.status != "pending"
        }

    @property
    def cancelled(self) -> bool:
        """The run was stopped while it waited: it ends without running anything."""
        return any(a.status == CANCELLED for a in self.approvals)


def waited_ms(approval: ToolApproval) -> float | None:
    if approval.decided_at is None:
        return None
    return round(max(0.0, (approval.decided_at - approval.created_at).total_seconds() * 1000), 2)


class ApprovalSweeper:
    """Denies the calls whose wait is over and resumes decided runs that no replica took up (the
    replica that decided died first, say). Every replica runs one; claims are atomic, so a run is
    resumed once."""

    def __init__(self, store: Store, resume: ResumeFn) -> None:
        self.store = store
        self.resume = resume
        self._failing = False

    async def sweep(self) -> int:
        """One pass; how many runs it resumed here."""
        await self.store.expire_approvals(datetime.now(UTC), TIMED_OUT_REASON)
        resumed = 0
        for run_id in await self.store.runs_ready_to_resume():
            resumed += await self.resume(run_id)
        return resumed

    async def sweep_forever(self, interval_s: float = SWEEP_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except DATABASE_ERRORS as exc:
                if not self._failing:  # once per outage, not every second
                    log.warning("approval sweep failed (%s); retrying", describe_database_error(exc))
                self._failing = True
            except Exception:
                log.exception("approval sweep failed")
            else:
                self._failing = False


def not_waiting(call_id: str) -> Conflict:
    return Conflict(f"tool call {call_id} is not waiting for approval", code="approval_not_pending")
