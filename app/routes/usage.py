"""`GET /api/usage`: the caller's tokens this budget period, by backend, against their budget."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from app.deps import CurrentUser, UsageDep

router = APIRouter(prefix="/api/usage", tags=["usage"])


class BackendUsageOut(BaseModel):
    backend: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageOut(BaseModel):
    period: str
    """The budget period setting: `day`, `week`, `month` or `<N>h`."""
    period_start: datetime
    resets_at: datetime
    budget: int | None
    """Tokens per period; null is unlimited."""
    used: int
    remaining: int | None
    by_backend: list[BackendUsageOut]


@router.get("")
async def get_usage(user: CurrentUser, usage: UsageDep) -> UsageOut:
    """Tokens the caller's model calls used this period (as the backends reported them), and the budget."""
    report = await usage.report(user.id)
    return UsageOut(
        period=report.period.name,
        period_start=report.period.start,
        resets_at=report.period.end,
        budget=report.budget,
        used=report.used,
        remaining=report.remaining,
        by_backend=[
            BackendUsageOut(
                backend=b.backend,
                prompt_tokens=b.prompt_tokens,
                completion_tokens=b.completion_tokens,
                total_tokens=b.total_tokens,
            )
            for b in report.by_backend
        ],
    )
