"""Token budgets: the budget period, each user's budget, counting the usage backends report, and the check
made before a model call starts.

Usage is what the backends report (prompt + completion tokens), added up per (user, period, backend) in
SQL with atomic upserts, so that it survives restarts and replicas share it. The check is made once,
before a run or a `/v1` request starts; a run that starts under the budget may go over it by its own
usage, since a model call's usage is only known when the call ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from agent.events import Usage
from app.errors import TooManyRequests
from app.settings import Settings
from app.store import Store

log = logging.getLogger(__name__)

UsageSink = Callable[[str, Usage], Awaitable[None]]
"""Records one model call's usage: (the backend that reported it, its usage)."""

MAX_CALL_TOKENS = 2**31 - 1
"""A backend's report is untrusted: one call counts at most this many prompt (and completion) tokens."""
CACHE_USERS = 10_000


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    """The setting it comes from: `day`, `week`, `month` or `<N>h`."""
    start: datetime
    end: datetime

    def describe(self) -> str:
        if self.name.endswith("h"):
            return f"{self.name[:-1]}-hour period"
        return self.name

    def seconds_left(self, now: datetime) -> int:
        return max(1, math.ceil((self.end - now).total_seconds()))


def current_period(spec: str, now: datetime) -> Period:
    """The budget period that contains `now`, aligned in UTC (see `Settings.token_budget_period`)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if spec == "day":
        return Period(spec, day, day + timedelta(days=1))
    if spec == "week":
        start = day - timedelta(days=day.weekday())
        return Period(spec, start, start + timedelta(days=7))
    if spec == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return Period(spec, start, end)
    if spec.endswith("h") and spec[:-1].isdigit() and int(spec[:-1]) > 0:
        length = int(spec[:-1]) * 3600
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        start = epoch + timedelta(seconds=int((now - epoch).total_seconds()) // length * length)
        return Period(spec, start, start + timedelta(seconds=length))
    raise ValueError(f"unknown token budget period {spec!r}: use day, week, month or <N>h")


def resolve_budget(override: int | None, default: int) -> int | None:
    """The budget in force: the user's own if set, else the default; None (also for 0) is unlimited."""
    budget = default if override is None else override
    return budget if budget > 0 else None


def iso(moment: datetime) -> str:
    """An ISO 8601 time in UTC, written as pydantic writes it in API answers (`...Z`)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def clamp_usage(prompt_tokens: object, completion_tokens: object) -> Usage:
    """A backend's reported counts as a `Usage`: anything not a count is 0, huge counts are capped."""

    def count(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return 0
        return min(max(int(value), 0), MAX_CALL_TOKENS)

    return Usage(count(prompt_tokens), count(completion_tokens))


class TokenBudgetExhausted(TooManyRequests):
    code = "token_budget_exhausted"


@dataclass(frozen=True, slots=True)
class BackendUsage:
    backend: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One user's usage in the current period."""

    period: Period
    budget: int | None
    by_backend: list[BackendUsage]

    @property
    def used(self) -> int:
        return sum(b.total_tokens for b in self.by_backend)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.used, 0)


@dataclass(slots=True)
class _Snapshot:
    period_start: datetime
    budget: int | None
    used: int
    expires: float


_Key = tuple[str, datetime, str]
"""(user id, period start, backend): one row of `token_usage`."""


class UsageMeter:
    """Records usage and checks budgets for one process (one per app, shared by `/api` and `/v1`).

    Usage is counted in memory at once and written to SQL every `token_usage_flush_s`, all of it in one
    transaction: a model call costs no database write of its own, however many there are. A user's
    budget and count are read from SQL at most once per `token_budget_cache_s`, plus what this process
    counted and has not written yet, so a single replica never lets a user past the budget by more than
    the calls in flight, and other replicas' usage shows within their flush and this cache time.
    """

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.default_budget = settings.user_token_budget
        self.period_spec = settings.token_budget_period
        self.cache_s = settings.token_budget_cache_s
        self.flush_s = settings.token_usage_flush_s
        self._clock = clock or (lambda: datetime.now(UTC))
        current_period(self.period_spec, self._clock())  # an unknown period fails at start-up
        self._cache: dict[str, _Snapshot] = {}
        self._unwritten: dict[_Key, Usage] = {}
        self._writing: dict[_Key, Usage] = {}
        self._write_lock = asyncio.Lock()
        self._flush_task: asyncio.Task[None] | None = None

    def period(self) -> Period:
        return current_period(self.period_spec, self._clock())

    async def check(self, user_id: str) -> None:
        """Raise `TokenBudgetExhausted` (429) if the user has used up this period's budget."""
        period = self.period()
        snapshot = self._cache.get(user_id)
        if snapshot is None or snapshot.period_start != period.start or snapshot.expires <= time.monotonic():
            override, used = await self.store.token_budget_state(user_id, period.start, period.end)
            snapshot = self._remember(user_id, period, override, used)
        if snapshot.budget is not None and snapshot.used >= snapshot.budget:
            wait = period.seconds_left(self._clock())
            raise TokenBudgetExhausted(
                f"your token budget is used up: {snapshot.used} of {snapshot.budget} tokens this "
                f"{period.describe()}; it resets at {iso(period.end)} (in {wait} s)",
                headers={"Retry-After": str(wait)},
            )

    def _remember(self, user_id: str, period: Period, override: int | None, stored: int) -> _Snapshot:
        """Cache what SQL said, plus what this process counted and has not written yet.

        A batch whose write commits while SQL is being read may be counted twice or not at all until
        the next read: off by at most one flush of this process, for at most `cache_s`.
        """
        used = stored + sum(
            u.prompt_tokens + u.completion_tokens
            for pending in (self._writing, self._unwritten)
            for (user, start, _), u in pending.items()
            if user == user_id and start == period.start
        )
        budget = resolve_budget(override, self.default_budget)
        snapshot = _Snapshot(period.start, budget, used, time.monotonic() + self.cache_s)
        if len(self._cache) >= CACHE_USERS:
            self._cache.clear()
        self._cache[user_id] = snapshot
        return snapshot

    def sink(self, user_id: str) -> UsageSink:
        """Where the model calls made for `user_id` report their usage."""
        return partial(self.record, user_id)

    async def record(self, user_id: str, backend: str, usage: Usage) -> None:
        """Count one model call's usage for the user. Never raises: a failed write is logged and retried."""
        usage = clamp_usage(usage.prompt_tokens, usage.completion_tokens)
        if usage.prompt_tokens + usage.completion_tokens == 0:
            return
        period = self.period()
        snapshot = self._cache.get(user_id)
        if snapshot is not None and snapshot.period_start == period.start:
            snapshot.used += usage.prompt_tokens + usage.completion_tokens
        key = (user_id, period.start, backend[:100])
        self._unwritten[key] = self._unwritten.get(key, Usage()) + usage
        if self.flush_s <= 0:
            await asyncio.shield(self.flush())
        elif self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.flush_s)
        await self.flush()

    async def flush(self) -> None:
        """Write what this process counted to SQL now (kept for the next try if the write fails)."""
        async with self._write_lock:
            if not self._unwritten:
                return
            self._writing, self._unwritten = self._unwritten, {}
            rows = [
                {
                    "user_id": user_id,
                    "period_start": start,
                    "backend": backend,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                }
                for (user_id, start, backend), usage in self._writing.items()
            ]
            try:
                await self.store.add_token_usage(rows)
            except BaseException as exc:  # cancelled too: what was not written is kept for the next flush
                for key, usage in self._writing.items():
                    self._unwritten[key] = self._unwritten.get(key, Usage()) + usage
                if not isinstance(exc, Exception):
                    raise
                log.exception("could not store the token usage of %d user(s); retrying", len(rows))
                if self.flush_s > 0 and (self._flush_task is None or self._flush_task.done()):
                    self._flush_task = asyncio.create_task(self._flush_soon())
            finally:
                self._writing = {}

    async def report(self, user_id: str) -> UsageReport:
        """This period's usage of `user_id`, by backend, from SQL (after writing this process's)."""
        await self.flush()
        period = self.period()
        override, rows = await self.store.token_usage_by_backend(user_id, period.start, period.end)
        by_backend = [BackendUsage(backend, p, c) for backend, p, c in rows]
        report = UsageReport(period, resolve_budget(override, self.default_budget), by_backend)
        self._remember(user_id, period, override, report.used)  # as fresh as it gets
        return report

    async def used_by_users(self) -> Mapping[str, int]:
        """Tokens each user used this period (users with none are left out), for the operator."""
        period = self.period()
        return await self.store.token_usage_per_user(period.start, period.end)

    async def aclose(self) -> None:
        """Write what is left (at shutdown)."""
        if self._flush_task is not None and not self._flush_task.done():
            self._flush_task.cancel()
        await self.flush()
