"""`chatstack users create|list|revoke`: manage the people who may use the API, and their keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from app.auth import hash_key, key_prefix, new_api_key
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_database
from app.errors import ChatstackError
from app.settings import Settings
from app.store import Store

users_app = typer.Typer(help="Manage users and their API keys.", no_args_is_help=True)
T = TypeVar("T")


def _with_store(action: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(Settings().resolved_database_url())
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
    """List users with the start of their key and whether it is revoked."""
    rows = _with_store(lambda store: store.users())
    for row in rows:
        if row.key_hash is None:
            continue  # the built-in `local` user has no key
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        typer.echo(f"{row.name:<24} {row.key_prefix}…  created {row.created_at:%Y-%m-%d %H:%M}  {state}")


@users_app.command()
def revoke(name: Annotated[str, typer.Argument(help="The user whose key stops working.")]) -> None:
    """Revoke a user's key: requests with it are refused from now on (within seconds on every replica)."""
    _with_store(lambda store: store.revoke_user(name))
    typer.echo(f"Revoked {name!r}.")
