"""The user's token budget as the page shows it: what is left in the sidebar, and why a message was
not sent once it is used up."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

from ui.api_client import ApiError
from ui.api_models import Usage

BUDGET_EXHAUSTED = "token_budget_exhausted"
"""The API's error code for a message refused because the budget is used up (a 429)."""

_PERIODS = {"day": "today", "week": "this week", "month": "this month"}


def period_text(period: str) -> str:
    return _PERIODS.get(period, "this period")


def resets_text(resets_at: datetime, now: datetime) -> str:
    """When the budget resets, in UTC (the server's periods are aligned in UTC): the time alone later
    today (or at the coming midnight), with the date otherwise."""
    at, now = resets_at.astimezone(UTC), now.astimezone(UTC)
    tonight = at - now <= timedelta(days=1) and at.hour == at.minute == 0
    if at.date() == now.date() or tonight:
        return f"at {at:%H:%M} UTC"
    return f"on {at:%a %d %b}, {at:%H:%M} UTC"


def budget_html(usage: Usage, now: datetime) -> str:
    """The sidebar's budget line; "" (hidden) without a budget."""
    if usage.budget is None:
        return ""
    remaining = max(0, usage.remaining if usage.remaining is not None else usage.budget - usage.used)
    state = " cs-budget-empty" if remaining == 0 else ""
    resets = html.escape(resets_text(usage.resets_at, now))
    return (
        f'<div class="cs-budget{state}" title="{usage.used:,} of {usage.budget:,} tokens used '
        f'{period_text(usage.period)}; resets {resets}">'
        f'<div class="cs-budget-line"><span>Tokens left {period_text(usage.period)}</span>'
        f"<strong>{remaining:,}</strong></div>"
        f'<progress class="cs-budget-bar" max="{usage.budget}" value="{min(usage.used, usage.budget)}">'
        f"</progress>"
        f'<div class="cs-budget-reset">of {usage.budget:,} · resets {resets}</div></div>'
    )


def refusal(exc: ApiError, usage: Usage | None, now: datetime) -> str:
    """The notice for a message the API refused because the budget is used up."""
    if usage is None or usage.budget is None:
        return f"Not sent: {exc.message}" if exc.message else "Not sent: your token budget is used up."
    return (
        f"Not sent: your token budget is used up ({usage.used:,} of {usage.budget:,} tokens "
        f"{period_text(usage.period)}). It resets {resets_text(usage.resets_at, now)}; "
        "your message is still in the box."
    )
