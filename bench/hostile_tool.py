"""What hostile calculator calls cost other users: their request latency with and without an attack.

    python -m bench.hostile_tool [--duration 5] [--rounds 3] [--attackers 4] [--out hostile.json]

Starts the scripted test backend and chatstack (SQLite, in a temporary directory), then runs
`--rounds` rounds of three phases of `--duration` seconds each, while a probe client sends another
user's simple requests one after another (`GET /healthz` and `GET /api/conversations`, each on its
own connection). Rounds, so that load from elsewhere on the machine falls on every phase alike; each
phase's samples are pooled over the rounds.

- `idle`: nothing else runs;
- `benign`: `--attackers` clients run agent runs calling the calculator with `1234*5678`, back to back;
- `hostile`: the same, with expressions that once stalled the server for a minute
  (`comb(10**300, 6*10**4)`, ...); every one must end in a tool error.

The added delay of a percentile is the hostile phase's minus the benign phase's: the same load of
agent runs, only the expression differs, so what remains is the hostile expression's doing. (Minus
the idle phase's is shown too: that is the cost of agent runs as such.) The goal it checks: a hostile
expression never delays another user's request by more than 100 ms, at p99 and at the maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.clients.sse import iter_events
from bench.metrics import percentile
from bench.proxy_overhead import BIN, _free_port, _start
from protocol.run_events import ToolFinished, parse_event

HOSTILE = [
    "comb(10**300, 6*10**4)",
    "perm(10**300, 3*10**4)",
    "factorial(10**6)",
    "9**9**9**9",
    "lcm(2**9999-1, 2**9998-1, 2**9997-1, 2**9996-1)",
    "comb(10**3000, 1500)",
]
BENIGN = ["1234*5678"]
PROBES = ("/healthz", "/api/conversations")
GOAL_MS = 100.0


@dataclass
class Phase:
    name: str
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PROBES})
    runs: int = 0
    tool_errors: int = 0
    tool_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        probes = {}
        for path, values in self.latencies_ms.items():
            probes[path] = {
                "requests": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p99_ms": round(percentile(values, 99), 2),
                "max_ms": round(max(values), 2),
            }
        result: dict[str, Any] = {"probes": probes, "runs": self.runs, "tool_errors": self.tool_errors}
        if self.tool_ms:
            result["tool_duration_max_ms"] = round(max(self.tool_ms), 2)
        if self.failures:
            result["failures"] = self.failures[:5]
        return result


async def _probe(session: aiohttp.ClientSession, url: str, path: str, until: float, out: list[float]) -> None:
    """Another user's simple request, one after another, with a short pause between."""
    while time.monotonic() < until:
        started = time.perf_counter()
        async with session.get(f"{url}{path}") as response:
            await response.read()
            response.raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)


async def _agent_run(session: aiohttp.ClientSession, url: str, expression: str, phase: Phase) -> None:
    """One conversation whose model calls the calculator with `expression`, read to its end."""
    async with session.post(f"{url}/api/conversations", json={}) as response:
        cid = (await response.json())["id"]
    body = {"content": f"calc: {expression}"}
    async with session.post(f"{url}/api/conversations/{cid}/messages", json=body) as response:
        run_id = (await response.json())["run_id"]
    chunks: list[tuple[float, bytes]] = []
    async with session.get(f"{url}/api/runs/{run_id}/events") as response:
        async for piece in response.content.iter_any():
            chunks.append((time.perf_counter(), piece))
    phase.runs += 1
    for sse in iter_events(chunks):
        event = parse_event(sse.event, sse.data)
        if isinstance(event, ToolFinished):
            phase.tool_ms.append(event.duration_ms or 0.0)
            if event.error:
                phase.tool_errors += 1
            elif expression in HOSTILE:
                phase.failures.append(f"{expression} answered {event.output[:80]!r}")
    await session.delete(f"{url}/api/conversations/{cid}")


async def _attacker(
    session: aiohttp.ClientSession, url: str, expressions: list[str], phase: Phase, until: float, first: int
) -> None:
    i = first
    while time.monotonic() < until:
        await _agent_run(session, url, expressions[i % len(expressions)], phase)
        i += 1


async def _phase(
    url: str, phase: Phase, duration_s: float, attack: Callable[[float], Awaitable[None]]
) -> Phase:
    until = time.monotonic() + duration_s
    # Probes on their own connections, so that they never queue behind the attackers' requests.
    async with aiohttp.ClientSession() as probe_session:
        await asyncio.gather(
            attack(until),
            *(_probe(probe_session, url, path, until, phase.latencies_ms[path]) for path in PROBES),
        )
    return phase


async def measure(url: str, duration_s: float, rounds: int, attackers: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        def attack(expressions: list[str], phase: Phase) -> Callable[[float], Awaitable[None]]:
            async def run(until: float) -> None:
                await asyncio.gather(
                    *(_attacker(session, url, expressions, phase, until, i) for i in range(attackers))
                )

            return run

        async def nothing(until: float) -> None:
            return None

        await _agent_run(session, url, BENIGN[0], Phase("warm-up"))
        idle, benign, hostile = Phase("idle"), Phase("benign"), Phase("hostile")
        for _ in range(rounds):
            await _phase(url, idle, duration_s, nothing)
            await _phase(url, benign, duration_s, attack(BENIGN, benign))
            await _phase(url, hostile, duration_s, attack(HOSTILE, hostile))

    results: dict[str, Any] = {p.name: p.summary() for p in (idle, benign, hostile)}
    added: dict[str, Any] = {}
    worst = 0.0
    for path in PROBES:
        row = {}
        for stat in ("p50_ms", "p99_ms", "max_ms"):
            over_idle = results["hostile"]["probes"][path][stat] - results["idle"]["probes"][path][stat]
            over_benign = results["hostile"]["probes"][path][stat] - results["benign"]["probes"][path][stat]
            row[f"{stat[:-3]}_over_idle_ms"] = round(over_idle, 2)
            row[f"{stat[:-3]}_over_benign_ms"] = round(over_benign, 2)
            if stat != "p50_ms":
                worst = max(worst, over_benign)
        added[path] = row
    results["added_delay"] = added
    results["goal"] = {
        "max_added_delay_ms": GOAL_MS,
        "worst_added_over_benign_ms": round(worst, 2),
        "met": worst <= GOAL_MS and not hostile.failures and hostile.tool_errors == hostile.runs,
    }
    return results


def _print_table(results: dict[str, Any]) -> None:
    print(f"{'phase':<8} {'probe':<20} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for phase in ("idle", "benign", "hostile"):
        for path, row in results[phase]["probes"].items():
            print(
                f"{phase:<8} {path:<20} {row['requests']:>6} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['max_ms']:>8.2f}"
            )
    hostile = results["hostile"]
    print(f"hostile runs: {hostile['runs']}, ended in a tool error: {hostile['tool_errors']}")
    print("added delay (hostile minus idle / minus benign), ms:")
    for path, row in results["added_delay"].items():
        print(
            f"  {path:<20} p50 {row['p50_over_idle_ms']:+.2f} / {row['p50_over_benign_ms']:+.2f}   "
            f"p99 {row['p99_over_idle_ms']:+.2f} / {row['p99_over_benign_ms']:+.2f}   "
            f"max {row['max_over_idle_ms']:+.2f} / {row['max_over_benign_ms']:+.2f}"
        )
    goal = results["goal"]
    verdict = "met" if goal["met"] else "NOT met"
    print(f"goal (no request delayed by more than {goal['max_added_delay_ms']:g} ms): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three phases")
    parser.add_argument("--attackers", type=int, default=4, help="concurrent clients running agent runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="chatstack-hostile-"))
    backend_port, app_port = _free_port(), _free_port()
    python = str(BIN / "python")
    backend = _start(
        [python, "-m", "backends.scripted.server", "--port", str(backend_port), "--token-delay-ms", "2"],
        f"http://127.0.0.1:{backend_port}/health",
        {},
        workdir / "backend.log",
    )
    backends_file = workdir / "backends.yaml"
    backends_file.write_text(
        "backends:\n"
        f"  - {{name: scripted, base_url: 'http://127.0.0.1:{backend_port}/v1', model: scripted,"
        " tool_mode: native, role: tools}\n"
    )
    app = _start(
        [str(BIN / "chatstack"), "serve", "--port", str(app_port)],
        f"http://127.0.0.1:{app_port}/healthz",
        {
            "CHATSTACK_BACKENDS_FILE": str(backends_file),
            "CHATSTACK_DEFAULT_BACKEND": "scripted",
            "CHATSTACK_DATA_DIR": str(workdir),
            "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'chatstack.db'}",
            "CHATSTACK_LOG_LEVEL": "WARNING",
            "CHATSTACK_RATE_LIMIT_PER_MINUTE": str(10**9),
            "CHATSTACK_MAX_CONCURRENT_RUNS": str(max(4, args.attackers)),  # every attacker is one user
        },
        workdir / "chatstack.log",
    )
    try:
        url = f"http://127.0.0.1:{app_port}"
        results = asyncio.run(measure(url, args.duration, args.rounds, args.attackers))
        results["cpu_count"] = os.cpu_count()
        results["duration_s_per_phase"] = args.duration * args.rounds
        results["attackers"] = args.attackers
    finally:
        for process in (app, backend):
            process.send_signal(signal.SIGTERM)
            process.wait(15)
    _print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
