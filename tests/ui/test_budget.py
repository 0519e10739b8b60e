"""The token budget as the page shows it (ui/budget.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ui.api_client import ApiError
from ui.api_models import Usage
from ui.budget import budget_html, refusal, resets_text

NOW = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # a Monday


def usage(
    budget: int | None, used: int, period: str = "day", resets_in: timedelta = timedelta(hours=8)
) -> Usage:
    return Usage(
        period=period,
        period_start=NOW - timedelta(hours=1),
        resets_at=NOW + resets_in,
        budget=budget,
        used=used,
        remaining=None if budget is None else max(0, budget - used),
    )


def test_no_budget_shows_nothing() -> None:
    assert budget_html(usage(None, 123_456), NOW) == ""


def test_what_is_left_of_what_and_when_it_resets() -> None:
    shown = budget_html(usage(100_000, 25_000, "week", timedelta(days=6, hours=8, minutes=30)), NOW)
    assert "Tokens left this week" in shown
    assert "<strong>75,000</strong>" in shown
    assert '<progress class="cs-budget-bar" max="100000" value="25000">' in shown
    assert "of 100,000 · resets on Mon 09 Mar, 00:00 UTC" in shown
    assert "cs-budget-empty" not in shown


def test_used_up_and_over() -> None:
    # A run that started under the budget may end over it.
    shown = budget_html(usage(1000, 1400), NOW)
    assert "<strong>0</strong>" in shown
    assert 'value="1000"' in shown
    assert "cs-budget-empty" in shown


def test_reset_times_are_utc_and_dated_beyond_a_day() -> None:
    assert resets_text(NOW + timedelta(hours=8, minutes=30), NOW) == "at 00:00 UTC"
    assert resets_text(datetime(2026, 3, 3, 2, 0, tzinfo=UTC), NOW) == "on Tue 03 Mar, 02:00 UTC"


def test_the_refusal_names_the_budget_or_falls_back_on_the_servers_words() -> None:
    exc = ApiError(429, "token_budget_exhausted", "your token budget is used up: it resets at X")
    assert refusal(exc, usage(500, 512, "month", timedelta(days=3)), NOW) == (
        "Not sent: your token budget is used up (512 of 500 tokens this month). It resets on "
        "Thu 05 Mar, 15:30 UTC; your message is still in the box."
    )
    assert refusal(exc, None, NOW) == "Not sent: your token budget is used up: it resets at X"
