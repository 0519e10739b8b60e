"""Migration 0005 (token budgets) on a database that migration 0004 made and that holds data, on SQLite
and PostgreSQL: upgrade keeps the data, the new table counts atomically, and downgrade undoes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import search_schema
from app.db.engine import create_engine, session_factory
from app.db.migrate import alembic_config, upgrade_database
from app.db.models import Base
from app.store import Store
from tests.support.databases import scratch_postgres

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A new, empty database."""
    if request.param == "sqlite":
        made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        yield made
        await made.dispose()
        return
    async with scratch_postgres("chatstack_migration") as url:
        made = create_engine(url)
        try:
            yield made
        finally:
            await made.dispose()


async def migrate(engine: AsyncEngine, action: str, revision: str) -> None:
    def run(connection: Connection) -> None:
        getattr(command, action)(alembic_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def fill_at_0004(engine: AsyncEngine) -> None:
    """Rows as a chatstack at migration 0004 wrote them (plain SQL: today's models have more columns)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, name, key_hash, key_prefix, created_at) "
                "VALUES ('u1', 'alice', 'hash1', 'cs_abc', :now)"
            ),
            {"now": NOW},
        )
        await conn.execute(
            text(
                "INSERT INTO conversations (id, user_id, title, backend, created_at, updated_at) "
                "VALUES ('c1', 'u1', 'Old chat', 'scripted', :now, :now)"
            ),
            {"now": NOW},
        )
        await conn.execute(
            text(
                "INSERT INTO runs (id, conversation_id, status, backend, created_at, llm_calls, tool_calls, "
                "prompt_tokens, completion_tokens) "
                "VALUES ('r1', 'c1', 'completed', 'scripted', :now, 1, 0, 12, 3)"
            ),
            {"now": NOW},
        )
        await conn.execute(
            text(
                "INSERT INTO messages (conversation_id, run_id, role, content, status, duration_ms, "
                "created_at) "
                "VALUES ('c1', 'r1', 'user', 'hello', 'complete', NULL, :now), "
                "('c1', 'r1', 'assistant', 'hi there', 'complete', NULL, :now)"
            ),
            {"now": NOW},
        )


async def tables_and_columns(engine: AsyncEngine) -> dict[str, set[str]]:
    def read(connection: Connection) -> dict[str, set[str]]:
        found = inspect(connection)
        return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def test_upgrade_from_0004_keeps_data_and_downgrade_undoes_it(engine: AsyncEngine) -> None:
    await migrate(engine, "upgrade", "0004")
    await fill_at_0004(engine)

    await upgrade_database(engine)  # what `chatstack serve` does at start-up
    schema = await tables_and_columns(engine)
    assert "token_budget" in schema["users"]
    assert schema["token_usage"] == {
        "user_id",
        "period_start",
        "backend",
        "prompt_tokens",
        "completion_tokens",
        "updated_at",
    }

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"include_name": search_schema.include_name})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        diff = await conn.run_sync(differences)
    assert diff == []  # the models and the migrations agree

    store = Store(session_factory(engine))
    users = await store.users()
    assert [(u.name, u.token_budget) for u in users if u.name == "alice"] == [("alice", None)]
    assert [m.content for m in await store.messages("c1")] == ["hello", "hi there"]
    assert (await store.get_run("r1")).prompt_tokens == 12

    # The new table counts, and adds up when several writers add at once.
    start, end = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
    row = {"user_id": "u1", "period_start": start, "backend": "scripted"}
    await asyncio.gather(
        *(store.add_token_usage([{**row, "prompt_tokens": 10, "completion_tokens": 5}]) for _ in range(20))
    )
    await store.add_token_usage(
        [
            {**row, "backend": "other", "prompt_tokens": 1, "completion_tokens": 1},
            {**row, "prompt_tokens": 0, "completion_tokens": 0},
        ]
    )
    await store.set_token_budget("alice", 1000)
    assert await store.token_budget_state("u1", start, end) == (1000, 20 * 15 + 2)
    assert await store.token_usage_by_backend("u1", start, end) == (
        1000,
        [("other", 1, 1), ("scripted", 200, 100)],
    )
    assert await store.token_usage_per_user(end, datetime(2026, 11, 26, tzinfo=UTC)) == {}

    await migrate(engine, "downgrade", "0004")
    schema = await tables_and_columns(engine)
    assert "token_usage" not in schema
    assert "token_budget" not in schema["users"]
    async with engine.connect() as conn:
        contents = (await conn.execute(text("SELECT content FROM messages ORDER BY id"))).scalars().all()
        names = (await conn.execute(text("SELECT name FROM users ORDER BY name"))).scalars().all()
    assert contents == ["hello", "hi there"]
    assert "alice" in names

    await upgrade_database(engine)  # and up again
    assert "token_usage" in await tables_and_columns(engine)
