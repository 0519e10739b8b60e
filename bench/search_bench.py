"""How fast `GET /api/search` answers over 100,000 messages, on SQLite or PostgreSQL.

    python -m bench.search_bench --db sqlite|postgresql [--messages 100000] [--queries 40] [--out f.json]

Starts chatstack on a new database (its migrations create the search index), fills the database with
generated conversations of several users (English-like text: a Zipf-distributed vocabulary of common
words, topic words and rare names, questions short and answers long, a tenth of the rows tool output),
then times queries over HTTP as one of the users, one at a time: single words, two words, quoted
phrases taken from stored messages, prefixes, and single words newest first. Reports the median and
95th percentile per kind, and how many messages each kind matched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]

BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("CHATSTACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
USER = "local"  # the user every request is made as with authentication off

COMMON = [
    "the",
    "be",
    "to",
    "of",
    "and",
    "a",
    "in",
    "that",
    "have",
    "I",
    "it",
    "for",
    "not",
    "on",
    "with",
    "he",
    "as",
    "you",
    "do",
    "at",
    "this",
    "but",
    "his",
    "by",
    "from",
    "they",
    "we",
    "say",
    "her",
    "she",
    "or",
    "an",
    "will",
    "my",
    "one",
    "all",
    "would",
    "there",
    "their",
    "what",
    "so",
    "up",
    "out",
    "if",
    "about",
    "who",
    "get",
    "which",
    "go",
    "me",
    "when",
    "make",
    "can",
    "like",
    "time",
    "no",
    "just",
    "him",
    "know",
    "take",
    "people",
    "into",
    "year",
    "your",
    "good",
    "some",
    "could",
    "them",
    "see",
    "other",
    "than",
    "then",
    "now",
    "look",
    "only",
    "come",
    "its",
    "over",
    "think",
    "also",
    "back",
    "after",
    "use",
    "two",
    "how",
    "our",
    "work",
    "first",
    "well",
    "way",
    "even",
    "new",
    "want",
    "because",
    "any",
    "these",
    "give",
    "day",
    "most",
    "us",
    "is",
    "are",
    "was",
    "were",
    "been",
    "has",
    "had",
    "did",
    "does",
    "should",
    "may",
    "might",
    "must",
]
TOPICAL = [
    "invoice",
    "budget",
    "meeting",
    "schedule",
    "project",
    "deadline",
    "report",
    "customer",
    "server",
    "database",
    "query",
    "index",
    "error",
    "python",
    "function",
    "variable",
    "recipe",
    "dinner",
    "chicken",
    "garlic",
    "oven",
    "flight",
    "hotel",
    "trip",
    "itinerary",
    "passport",
    "museum",
    "train",
    "ticket",
    "weather",
    "forecast",
    "rain",
    "running",
    "training",
    "marathon",
    "injury",
    "doctor",
    "insurance",
    "contract",
    "lawyer",
    "garden",
    "tomato",
    "soil",
    "planting",
    "mortgage",
    "interest",
    "payment",
    "salary",
    "taxes",
    "refund",
    "deploy",
    "kubernetes",
    "container",
    "latency",
    "benchmark",
    "cache",
    "memory",
    "thread",
    "deadlock",
    "migration",
    "backup",
    "restore",
    "password",
    "account",
    "login",
    "email",
    "calendar",
    "reminder",
    "birthday",
    "gift",
    "wedding",
    "holiday",
    "beach",
    "mountain",
    "hiking",
    "camping",
    "tent",
    "bicycle",
    "repair",
    "engine",
    "battery",
    "charging",
    "electric",
    "vehicle",
    "apartment",
    "rent",
    "landlord",
    "lease",
    "neighbor",
    "noise",
    "painting",
    "kitchen",
]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "te",
    "vi",
    "zo",
    "ba",
    "de",
    "fi",
    "gu",
    "ho",
    "ja",
    "ku",
    "le",
    "mo",
    "nu",
    "pi",
    "ra",
    "si",
    "to",
    "ve",
]


def vocabulary(rng: random.Random, rare: int = 20_000) -> tuple[list[str], list[float]]:
    """Words and cumulative weights: common words most often, then topics, then a long tail of names."""
    names = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(rare)}
    words = COMMON + TOPICAL + sorted(names)
    weights = [1.0 / (rank + 1) ** 1.07 for rank in range(len(words))]
    cumulative, total = [], 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    return words, cumulative


def sentences(rng: random.Random, words: list[str], cum: list[float], count: int) -> str:
    picked = rng.choices(words, cum_weights=cum, k=count)
    out, i = [], 0
    while i < len(picked):
        n = rng.randint(6, 18)
        part = picked[i : i + n]
        out.append(" ".join(part).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
        i += n
    return " ".join(out)


@dataclass
class Row:
    conversation_id: str
    role: str
    content: str
    created_at: datetime


def generate(messages: int, users: list[str], seed: int = 7) -> tuple[list[tuple[str, str, str]], list[Row]]:
    """Conversations (id, user, title) and their messages, in the order they were written."""
    rng = random.Random(seed)
    words, cum = vocabulary(rng)
    per_conversation = 100
    n_conversations = max(1, messages // per_conversation)
    conversations = [
        (uuid.uuid4().hex, users[i % len(users)], f"Chat {i}: " + sentences(rng, words, cum, 4)[:40])
        for i in range(n_conversations)
    ]
    start = datetime.now(UTC) - timedelta(days=60)
    rows: list[Row] = []
    for i in range(messages):
        cid = conversations[rng.randrange(n_conversations)][0]
        kind = i % 10
        role = "tool" if kind == 9 else ("user" if kind % 2 == 0 else "assistant")
        length = {"user": rng.randint(5, 60), "assistant": rng.randint(30, 300), "tool": rng.randint(20, 120)}
        rows.append(
            Row(cid, role, sentences(rng, words, cum, length[role]), start + timedelta(seconds=50 * i))
        )
    return conversations, rows


def _sqlite_time(value: datetime) -> str:
    # How SQLAlchemy stores a DateTime in SQLite.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_sqlite(
    path: Path, users: list[str], conversations: list[tuple[str, str, str]], rows: list[Row]
) -> None:
    db = sqlite3.connect(path, timeout=60)
    now = _sqlite_time(datetime.now(UTC))
    with db:
        db.executemany(
            "INSERT OR IGNORE INTO users (id, name, created_at) VALUES (?, ?, ?)",
            [(u, u, now) for u in users],
        )
        db.executemany(
            "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(c, u, t, now, now) for c, u, t in conversations],
        )
        db.executemany(
            "INSERT INTO messages (conversation_id, role, content, status, created_at) "
            "VALUES (?, ?, ?, 'complete', ?)",
            [(r.conversation_id, r.role, r.content, _sqlite_time(r.created_at)) for r in rows],
        )
    db.close()


async def seed_postgres(
    dsn: str, users: list[str], conversations: list[tuple[str, str, str]], rows: list[Row]
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO users (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                [(u, u, now) for u in users],
            )
            await conn.copy_records_to_table(
                "conversations",
                records=[(c, u, t, now, now) for c, u, t in conversations],
                columns=["id", "user_id", "title", "created_at", "updated_at"],
            )
            await conn.copy_records_to_table(
                "messages",
                records=[(r.conversation_id, r.role, r.content, "complete", r.created_at) for r in rows],
                columns=["conversation_id", "role", "content", "status", "created_at"],
            )
        # What autovacuum does to a table soon after a bulk load (statistics, visibility map, hint bits):
        # without it the first queries would measure that one-off work instead of searching.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def queries(
    rows: list[Row], owner_conversations: set[str], per_kind: int, seed: int = 11
) -> dict[str, list[dict[str, str]]]:
    """Queries a user would type, drawn from the user's own messages (so they match something)."""
    rng = random.Random(seed)
    own = [r for r in rows if r.conversation_id in owner_conversations and r.role != "tool"]
    topic = list(TOPICAL)

    def words_of(row: Row) -> list[str]:
        return [w.strip(".?!").lower() for w in row.content.split()]

    def rare_word() -> str:
        while True:
            candidates = [w for w in words_of(rng.choice(own)) if w not in COMMON and w not in TOPICAL]
            if candidates:
                return rng.choice(candidates)

    def phrase() -> str:
        while True:
            ws = words_of(rng.choice(own))
            if len(ws) >= 4:
                i = rng.randrange(len(ws) - 3)
                return '"' + " ".join(ws[i : i + 3]) + '"'

    def two_words() -> str:
        while True:
            ws = sorted({w for w in words_of(rng.choice(own)) if w not in COMMON})
            if len(ws) >= 2:
                return " ".join(rng.sample(ws, 2))

    def prefix() -> str:
        word = rng.choice([w for w in topic if len(w) >= 6])
        return word[: rng.randint(3, 4)] + "*"

    return {
        "word": [{"q": rng.choice(topic)} for _ in range(per_kind)],
        "two_words": [{"q": two_words()} for _ in range(per_kind)],
        "rare_word": [{"q": rare_word()} for _ in range(per_kind)],
        "phrase": [{"q": phrase()} for _ in range(per_kind)],
        "prefix": [{"q": prefix()} for _ in range(per_kind)],
        "word_recent": [{"q": rng.choice(topic), "order": "recent"} for _ in range(per_kind)],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_chatstack(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(BIN / "chatstack"), "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chatstack exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"chatstack did not start; see {log}")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(base_url: str, plan: dict[str, list[dict[str, str]]]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(base_url) as http:
        for params in plan["word"][:5]:  # warm the caches and the connection
            async with http.get("/api/search", params=params) as response:
                await response.read()
        for kind, batch in plan.items():
            latencies, totals = [], []
            for params in batch:
                start = time.perf_counter()
                async with http.get("/api/search", params={**params, "limit": "20"}) as response:
                    body = await response.json()
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status != 200:
                    raise RuntimeError(f"{params}: {response.status} {body}")
                totals.append(body["total"])
            results[kind] = {
                "median_ms": round(statistics.median(latencies), 2),
                "p95_ms": round(_p(latencies, 0.95), 2),
                "max_ms": round(max(latencies), 2),
                "median_matches": statistics.median(totals),
            }
    return results


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(chatstack's database URL, the URL to seed it with) of a new database, dropped afterwards."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        yield f"sqlite+aiosqlite:///{path}", str(path)
        return
    name = f"chatstack_search_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}", f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(kind: str, messages: int, per_kind: int) -> dict[str, object]:
    users = [USER] + [f"bench-user-{i}" for i in range(1, 5)]
    conversations, rows = generate(messages, users)
    own = {c for c, u, _ in conversations if u == USER}
    plan = queries(rows, own, per_kind)
    with tempfile.TemporaryDirectory() as tmp, database(kind, Path(tmp)) as (url, seed_url):
        workdir = Path(tmp)
        backends = workdir / "backends.yaml"
        # A backend nothing listens on: searching needs no model.
        backends.write_text(
            f"backends:\n  - name: none\n    base_url: http://127.0.0.1:{_free_port()}/v1\n    model: none\n"
        )
        port = _free_port()
        env = {
            "CHATSTACK_DATABASE_URL": url,
            "CHATSTACK_BACKENDS_FILE": str(backends),
            "CHATSTACK_DEFAULT_BACKEND": "none",
            "CHATSTACK_DATA_DIR": str(workdir),
            "CHATSTACK_AUTH": "off",
            "CHATSTACK_UI": "false",
            "CHATSTACK_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        process = start_chatstack(env, port, workdir / "chatstack.log")  # its migrations make the index
        try:
            began = time.perf_counter()
            if kind == "sqlite":
                seed_sqlite(Path(seed_url), users, conversations, rows)
            else:
                asyncio.run(seed_postgres(seed_url, users, conversations, rows))
            seeded_s = time.perf_counter() - began
            load_before = os.getloadavg()[0]
            results = asyncio.run(measure(f"http://127.0.0.1:{port}", plan))
            load_after = os.getloadavg()[0]
        finally:
            process.terminate()
            process.wait(15)
    return {
        "database": kind,
        "messages": messages,
        "users": len(users),
        "searching_user_messages": sum(1 for r in rows if r.conversation_id in own),
        "insert_s": round(seeded_s, 1),
        "queries_per_kind": per_kind,
        # Latency on a shared machine is mostly waiting for a CPU: read the numbers with the load.
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "cpus": os.cpu_count(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=40, help="queries of each kind")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args()
    report = run(args.db, args.messages, args.queries)
    print(
        f"{report['database']}: {report['messages']} messages of {report['users']} users, "
        f"inserted in {report['insert_s']} s; load average {report['load_average']} on {report['cpus']} CPUs"
    )
    print(f"{'query':<12} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'matches':>8}")
    results = report["results"]
    assert isinstance(results, dict)
    for kind, r in results.items():
        print(f"{kind:<12} {r['median_ms']:>10} {r['p95_ms']:>8} {r['max_ms']:>8} {r['median_matches']:>8}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
