"""`chatstack users create|list|revoke|set-budget|usage`: manage the people who may use the API, their keys
and their token budgets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, TypeVar

import typer

from app.auth import hash_key, key_prefix, new_api_key
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_database
from app.db.models import User
from app.errors import ChatstackError
from app.settings import Settings
from app.store import Store
from app.usage import UsageMeter, iso, resolve_budget

users_app = typer.Typer(help="Manage users and their API keys.", no_args_is_help=True)
T = TypeVar("T")


def _with_store(action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(_settings().resolved_database_url())
        try:
            await upgrade_database(engine)
            return await action(Store(session_factory(engine)))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ChatstackError as exc:
        typer.echo(f"chatstack: {exc.message}", err=True)
        raise typer.Exit(1) from exc


@users_app.command()
def create(name: Annotated[str, typer.Argument(help="A unique user name.")]) -> None:
    """Create a user and print their API key (shown once; only its hash is stored)."""
    key = new_api_key()
    _with_store(lambda store: store.create_user(name, hash_key(key), key_prefix(key)))
    typer.echo(f"Created user {name!r}. API key (store it now, it is not shown again):\n{key}")


@users_app.command("list")
def list_users() -> None:
    """List users with the start of their key, whether it is revoked, and their token budget."""
    rows = _with_store(lambda store: store.users())
    default = _settings().user_token_budget
    for row in rows:
        if row.key_hash is None:
            continue  # the built-in `local` user has no key
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        budget = _budget_text(resolve_budget(row.token_budget, default), row.token_budget is None)
        typer.echo(
            f"{row.name:<24} {row.key_prefix}…  created {row.created_at:%Y-%m-%d %H:%M}  {state:<24} "
            f"budget {budget}"
        )


@users_app.command()
def revoke(name: Annotated[str, typer.Argument(help="The user whose key stops working.")]) -> None:
    """Revoke a user's key: requests with it are refused from now on (within seconds on every replica)."""
    _with_store(lambda store: store.revoke_user(name))
    typer.echo(f"Revoked {name!r}.")


@users_app.command("set-budget")
def set_budget(
    name: Annotated[str, typer.Argument(help="The user (`local` is everyone while auth is off).")],
    tokens: Annotated[
        str,
        typer.Argument(
            help="Tokens per budget period; `unlimited` (or 0); or `default` to follow "
            "CHATSTACK_USER_TOKEN_BUDGET again.",
            show_default=False,
        ),
    ],
) -> None:
    """Set a user's own token budget per period (prompt + completion tokens, as backends report them)."""
    choice = tokens.strip().lower()
    value: int | None
    if choice == "default":
        value = None
    elif choice == "unlimited":
        value = 0
    elif choice.isdigit() and int(choice) < 2**63:
        value = int(choice)
    else:
        typer.echo(
            f"chatstack: TOKENS must be a whole number, `unlimited` or `default`, not {tokens!r}", err=True
        )
        raise typer.Exit(2)
    _with_store(lambda store: store.set_token_budget(name, value))
    settings = _settings()
    if value is None:
        default = _budget_text(resolve_budget(None, settings.user_token_budget), False)
        typer.echo(f"{name!r} follows the default token budget again: {default}.")
    elif value == 0:
        typer.echo(f"{name!r} has no token budget (unlimited).")
    else:
        typer.echo(f"{name!r} may use {value} tokens per {settings.token_budget_period}.")


@users_app.command()
def usage() -> None:
    """Show each user's tokens this budget period, their budget and what remains."""
    settings = _settings()

    async def gather(store: Store) -> tuple[UsageMeter, Sequence[User], Mapping[str, int]]:
        meter = UsageMeter(store, settings)
        return meter, await store.users(), await meter.used_by_users()

    meter, rows, used = _with_store(gather)
    period = meter.period()
    typer.echo(f"Period: {period.name}, from {iso(period.start)}; resets at {iso(period.end)}")
    typer.echo(f"{'NAME':<24} {'USED':>12} {'BUDGET':>18} {'REMAINING':>12}")
    for row in rows:
        if row.key_hash is None and not used.get(row.id):
            continue  # `local` only matters when auth is off, and then it has usage
        budget = resolve_budget(row.token_budget, settings.user_token_budget)
        spent = used.get(row.id, 0)
        remaining = "-" if budget is None else str(max(budget - spent, 0))
        name = f"{row.name} (revoked)" if row.revoked_at else row.name
        typer.echo(
            f"{name:<24} {spent:>12} {_budget_text(budget, row.token_budget is None):>18} {remaining:>12}"
        )


def _settings() -> Settings:
    return Settings()


def _budget_text(budget: int | None, is_default: bool) -> str:
    text = "unlimited" if budget is None else str(budget)
    return f"{text} (default)" if is_default else text
