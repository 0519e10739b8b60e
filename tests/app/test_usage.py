"""Token budget pieces: periods, budgets, reading usage from `/v1` responses as they are relayed, and the
meter that counts and checks (on a real SQLite database)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.events import Usage
from app.db.engine import create_engine, session_factory
from app.db.migrate import upgrade_database
from app.openai_proxy import StreamUsage, usage_in_body
from app.settings import Settings
from app.store import Store
from app.usage import TokenBudgetExhausted, UsageMeter, clamp_usage, current_period, iso, resolve_budget
from protocol.openai_wire import DONE, ChunkEncoder


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("spec", "now", "start", "end"),
    [
        ("day", "2026-03-10T23:59:59+00:00", "2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"),
        # Aligned in UTC whatever the caller's zone: 01:30 at +02:00 is 23:30 UTC the day before.
        ("day", "2026-03-10T01:30:00+02:00", "2026-03-09T00:00:00+00:00", "2026-03-10T00:00:00+00:00"),
        ("week", "2026-03-15T12:00:00+00:00", "2026-03-09T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("week", "2026-03-16T00:00:00+00:00", "2026-03-16T00:00:00+00:00", "2026-03-23T00:00:00+00:00"),
        ("month", "2026-02-28T10:00:00+00:00", "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
        ("month", "2026-12-31T23:00:00+00:00", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("6h", "2026-03-10T13:05:00+00:00", "2026-03-10T12:00:00+00:00", "2026-03-10T18:00:00+00:00"),
        ("1h", "2026-03-10T13:05:00+00:00", "2026-03-10T13:00:00+00:00", "2026-03-10T14:00:00+00:00"),
    ],
)
def test_budget_periods_are_aligned_in_utc(spec: str, now: str, start: str, end: str) -> None:
    period = current_period(spec, at(now))
    assert (period.start, period.end) == (at(start), at(end))
    assert period.start.tzinfo is not None


def test_unknown_period_and_period_texts() -> None:
    with pytest.raises(ValueError, match="unknown token budget period"):
        current_period("fortnight", datetime.now(UTC))
    period = current_period("6h", at("2026-03-10T13:05:00+00:00"))
    assert period.describe() == "6-hour period"
    assert period.seconds_left(at("2026-03-10T17:59:59.5+00:00")) == 1
    assert iso(period.end) == "2026-03-10T18:00:00Z"


def test_budget_resolution() -> None:
    assert resolve_budget(None, 0) is None  # no default, no override: unlimited
    assert resolve_budget(None, 500) == 500
    assert resolve_budget(100, 500) == 100
    assert resolve_budget(0, 500) is None  # a user's own 0 is unlimited, as the default's 0 is


def test_reported_counts_are_bounded() -> None:
    assert clamp_usage(3, 4) == Usage(3, 4)
    assert clamp_usage(-5, "7") == Usage(0, 0)
    assert clamp_usage(True, float("nan")) == Usage(0, 0)
    assert clamp_usage(10**30, 2.9) == Usage(2**31 - 1, 2)


def chunk(delta: dict[str, object] | None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, object] = {"id": "c", "object": "chat.completion.chunk"}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": None}]
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


STREAM = (
    chunk({"role": "assistant", "content": ""})
    + chunk({"content": "Hello"})
    + chunk({"content": ' "usage": {not json'})
    + chunk({}, None)
    + chunk(None, {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13})
    + b"data: [DONE]\n\n"
)
WITHOUT_USAGE = STREAM.replace(
    chunk(None, {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}), b""
)


def relay(scanner: StreamUsage, stream: bytes, size: int) -> bytes:
    out = b"".join(scanner.feed(stream[i : i + size]) for i in range(0, len(stream), size))
    return out + scanner.finish()


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_usage_only_event_is_stripped_when_the_client_did_not_ask(size: int) -> None:
    scanner = StreamUsage(strip=True)
    assert relay(scanner, STREAM, size) == WITHOUT_USAGE
    assert scanner.usage == Usage(11, 2)
    assert scanner.final


@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_stream_passes_unchanged_when_the_client_asked(size: int) -> None:
    scanner = StreamUsage(strip=False)
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    # Each piece goes on at once, as it came: nothing is held back.
    assert [scanner.feed(piece) for piece in pieces] == pieces
    assert scanner.finish() == b""
    assert scanner.usage == Usage(11, 2)


def test_crlf_streams_and_usage_inside_a_choice() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    scanner = StreamUsage(strip=True)
    assert relay(scanner, crlf, 3) == WITHOUT_USAGE.replace(b"\n", b"\r\n")
    assert scanner.usage == Usage(11, 2)
    # Usage riding on a chunk that has choices is read, but the chunk is the client's: it stays.
    riding = chunk({"content": "x"}, {"prompt_tokens": 1, "completion_tokens": 1}) + b"data: [DONE]\n\n"
    scanner = StreamUsage(strip=True)
    assert relay(scanner, riding, 4) == riding
    assert scanner.usage == Usage(1, 1)
    assert not scanner.final


def test_long_lines_pass_at_once() -> None:
    long_line = chunk({"content": "x" * 50_000})
    scanner = StreamUsage(strip=True)
    first = scanner.feed(long_line[:30_000])
    assert first == long_line[:30_000]
    assert scanner.feed(long_line[30_000:]) == long_line[30_000:]
    assert scanner.usage is None


def test_emulator_stream_usage_is_read_and_stripped() -> None:
    encoder = ChunkEncoder("chatcmpl-1", "m", 1)
    body = encoder.role() + encoder.delta('{"content":"hi"}') + encoder.finish("stop")
    usage = encoder.usage({"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6})
    scanner = StreamUsage(strip=True)
    assert relay(scanner, body + usage + DONE, 9) == body + DONE
    assert scanner.usage == Usage(5, 1)


def test_usage_of_a_whole_completion() -> None:
    body = {
        "id": "x",
        "choices": [{"message": {"role": "assistant", "content": 'the "usage": {"prompt_tokens": 99} trap'}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    assert usage_in_body(json.dumps(body).encode()) == Usage(7, 3)
    assert usage_in_body(json.dumps(body, indent=2).encode()) == Usage(7, 3)
    assert usage_in_body(b'{"choices": [], "usage": null}') is None
    assert usage_in_body(b"not json") is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}")
    await upgrade_database(engine)
    yield Store(session_factory(engine), serialize_writes=True)
    await engine.dispose()


class Clock:
    def __init__(self, now: str) -> None:
        self.now = at(now)

    def __call__(self) -> datetime:
        return self.now


async def test_meter_counts_at_once_and_writes_in_batches(store: Store) -> None:
    settings = Settings(user_token_budget=100, token_budget_cache_s=0, token_usage_flush_s=3600)
    clock = Clock("2026-03-10T22:00:00+00:00")
    meter = UsageMeter(store, settings, clock)
    other_replica = UsageMeter(store, settings, clock)
    await meter.check("local")
    await meter.record("local", "a", Usage(60, 10))
    await meter.record("local", "b", Usage(30, 5))
    # Over budget in this process at once, although nothing is written yet (and the count read from
    # SQL on every check, with no cache, keeps what is still unwritten).
    with pytest.raises(TokenBudgetExhausted) as refused:
        await meter.check("local")
    assert refused.value.headers == {"Retry-After": str(2 * 3600)}
    assert "105 of 100 tokens this day" in refused.value.message
    assert "resets at 2026-03-11T00:00:00Z" in refused.value.message
    await other_replica.check("local")  # nothing written yet
    await meter.flush()
    with pytest.raises(TokenBudgetExhausted):
        await other_replica.check("local")
    report = await other_replica.report("local")
    assert [(b.backend, b.total_tokens) for b in report.by_backend] == [("a", 70), ("b", 35)]
    assert (report.used, report.budget, report.remaining) == (105, 100, 0)
    # A new day, a new budget.
    clock.now = at("2026-03-11T00:00:01+00:00")
    await meter.check("local")
    assert (await meter.report("local")).used == 0


async def test_meter_keeps_usage_it_could_not_write(store: Store) -> None:
    meter = UsageMeter(store, Settings(token_usage_flush_s=3600))

    async def broken(rows: object) -> None:
        raise OSError("database gone")

    write = store.add_token_usage
    store.add_token_usage = broken  # type: ignore[method-assign]
    await meter.record("local", "a", Usage(3, 4))
    await meter.flush()  # logged, kept
    store.add_token_usage = write  # type: ignore[method-assign]
    await meter.aclose()
    assert (await meter.report("local")).used == 7
