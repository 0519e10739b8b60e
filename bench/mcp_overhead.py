"""What chatstack's MCP client adds to a tool call, against real MCP servers.

    python -m bench.mcp_overhead [--calls 300] [--warmup 30] [--targets everything-stdio,...]
                                 [--agent-runs 0] [--out DIR]
    chatstack bench mcp [same options]

For each target (server-everything's `echo` over stdio and over streamable HTTP, mcp-server-time's
`get_current_time` over stdio) one `LiveToolCatalog` connects to the server, and every round makes
two calls on the same long-lived session:
- **bare**: the SDK client's own `call_tool` (the server's time, transport included);
- **wrapped**: the path the agent takes, `catalog.get(name).tool.run(arguments)` (catalog lookup,
  timeout, error mapping, result conversion, output bounds and fencing).
The order alternates every round (bare first, then wrapped first) so drift and order effects cancel;
the per-round difference `wrapped - bare` is the paired overhead, and chatstack's own time is each
wrapped call minus the SDK call inside it (timed in place). `--agent-runs N` adds one MCP call inside
N real agent runs (bench/mcp_in_agent.py). Results: `calls.csv` (every round)
and `results.json` (summaries, options, the machine's load) in `--out` (default
`bench-results/mcp-overhead-<time>/`), and a table in the terminal.

The two calls share the session and the server process on purpose: any difference is chatstack's.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.serving_metrics import percentile
from tools.mcp.adapter import McpTool
from tools.mcp.catalog import LiveToolCatalog
from tools.tools_file import ToolsFile

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING_JS = ROOT / "tests/mcp/servers/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
"""Installed (pinned) by `make mcp-servers`."""
MCP_SERVER_TIME = Path(sys.executable).parent / "mcp-server-time"
TARGET_MS = 5.0
"""Issue 12's budget: at most 5 ms added per call to the server's own time."""
CONNECT_TIMEOUT_S = 60.0
CSV_COLUMNS = (
    "target", "transport", "tool", "round", "bare_first", "bare_ms", "wrapped_ms", "diff_ms", "own_ms",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Target:
    """One server and the tool the bench calls on it."""

    label: str
    transport: str
    tool: str
    arguments: dict[str, Any]


TARGETS = {
    "everything-stdio": Target("everything-stdio", "stdio", "echo", {"message": "ping"}),
    "everything-http": Target("everything-http", "streamable-http", "echo", {"message": "ping"}),
    "time-stdio": Target("time-stdio", "stdio", "get_current_time", {"timezone": "UTC"}),
}


@dataclass(slots=True)
class Samples:
    """Per-round wall times, in milliseconds; `bare[i]` and `wrapped[i]` come from the same round."""

    bare_ms: list[float] = field(default_factory=list)
    wrapped_ms: list[float] = field(default_factory=list)
    inner_ms: list[float] = field(default_factory=list)
    """The SDK call inside each wrapped call: `wrapped - inner` is chatstack's own time, exactly."""
    bare_first: list[bool] = field(default_factory=list)

    @property
    def own_ms(self) -> list[float]:
        return [w - i for w, i in zip(self.wrapped_ms, self.inner_ms, strict=True)]

    @property
    def paired_ms(self) -> list[float]:
        return [w - b for b, w in zip(self.bare_ms, self.wrapped_ms, strict=True)]


@dataclass(frozen=True, slots=True)
class Distribution:
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def of(cls, values: list[float]) -> Distribution:
        return cls(*(round(percentile(values, q), 4) for q in (50, 90, 99)))


@dataclass(frozen=True, slots=True)
class Overhead:
    """One target's result. `added_ms` (difference of medians) is the number issue 12 budgets."""

    target: str
    transport: str
    tool: str
    calls: int
    bare: Distribution
    wrapped: Distribution
    paired: Distribution
    """Percentiles of the per-round differences (wrapped - bare)."""
    own: Distribution
    """Chatstack's own time inside each wrapped call (wrapped minus its SDK call): no server noise."""
    added_ms: float
    ratio: float
    """Wrapped median over bare median."""
    within_target: bool


def summarise(target: Target, samples: Samples) -> Overhead:
    bare, wrapped = statistics.median(samples.bare_ms), statistics.median(samples.wrapped_ms)
    added = wrapped - bare
    return Overhead(
        target=target.label,
        transport=target.transport,
        tool=target.tool,
        calls=len(samples.bare_ms),
        bare=Distribution.of(samples.bare_ms),
        wrapped=Distribution.of(samples.wrapped_ms),
        paired=Distribution.of(samples.paired_ms),
        own=Distribution.of(samples.own_ms),
        added_ms=round(added, 4),
        ratio=round(wrapped / bare, 4) if bare > 0 else float("nan"),
        within_target=added <= TARGET_MS,
    )


@dataclass(frozen=True, slots=True)
class InAgent:
    """One MCP call inside agent runs: `tool.finished` `duration_ms` against the bare call's median
    (measured by this bench, on its own server-everything process: an approximation)."""

    runs: int
    tool_step: Distribution
    durations_ms: list[float]
    bare_p50_ms: float | None
    added_ms: float | None

    @classmethod
    def of(cls, durations: list[float], bare_p50_ms: float | None) -> InAgent:
        step = Distribution.of(durations)
        added = None if bare_p50_ms is None else round(step.p50_ms - bare_p50_ms, 4)
        return cls(len(durations), step, durations, bare_p50_ms, added)

    def line(self) -> str:
        step = self.tool_step
        text = f"In agent runs ({self.runs}): the tool step's p50/p90/p99"
        text += f" {step.p50_ms:.3f} / {step.p90_ms:.3f} / {step.p99_ms:.3f} ms"
        if self.added_ms is not None:
            text += f"; {self.added_ms:+.3f} ms over the bare stdio echo's median"
        return text


# measurement (shared with tests/mcp/test_sessions.py)


def find_tool(catalog: LiveToolCatalog, raw_name: str) -> McpTool:
    """The catalog's adapter for the server's tool `raw_name` (its offered name may be prefixed)."""
    for entry in catalog.entries():
        if isinstance(entry.tool, McpTool) and entry.tool.raw_name == raw_name:
            return entry.tool
    raise LookupError(f"no MCP tool {raw_name!r} in the catalog: {[e.name for e in catalog.entries()]}")


async def wait_available(catalog: LiveToolCatalog, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(s.state.status == "available" for s in catalog.sessions):
        if time.monotonic() > deadline:
            reasons = {s.name: s.state.reason for s in catalog.sessions}
            raise RuntimeError(f"MCP servers not available after {timeout_s:g} s: {reasons}")
        await asyncio.sleep(0.05)


async def measure_overhead(
    catalog: LiveToolCatalog,
    raw_name: str,
    arguments: dict[str, Any],
    *,
    calls: int = 300,
    warmup: int = 30,
) -> Samples:
    """`calls` rounds of one bare SDK call and one call through the catalog's adapter, alternating
    which goes first; `warmup` rounds before are not recorded. Raises if a call fails (an error would
    measure the error path, not the call)."""
    tool = find_tool(catalog, raw_name)
    session = next(s for s in catalog.sessions if s.name == tool.server)
    # The SDK client the session owns has no public accessor; it is exactly what the adapter calls.
    client = session._client
    if client is None:
        raise RuntimeError(f"the {session.name} MCP server is not connected")
    offered = tool.name
    sdk_call = client.call_tool
    inner: list[float] = []

    async def timed_sdk_call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await sdk_call(*args, **kwargs)
        finally:
            inner.append((time.perf_counter() - started) * 1000)

    async def bare() -> float:
        started = time.perf_counter()
        result = await sdk_call(raw_name, arguments)
        elapsed = (time.perf_counter() - started) * 1000
        if result.is_error:
            raise RuntimeError(f"bare call to {raw_name} failed: {result.content!r:.300}")
        return elapsed

    async def wrapped() -> float:
        started = time.perf_counter()
        entry = catalog.get(offered)  # the agent's path: look the tool up, then run it
        assert entry is not None
        output = await entry.tool.run(arguments)
        elapsed = (time.perf_counter() - started) * 1000
        if output.error:
            raise RuntimeError(f"call through chatstack to {offered} failed: {output.error:.300}")
        return elapsed

    samples = Samples()
    # For the measurement only, the session's client times its SDK call inside each wrapped call.
    setattr(client, "call_tool", timed_sdk_call)  # noqa: B010 (mypy refuses assigning a method)
    try:
        for i in range(warmup + calls):
            bare_first = i % 2 == 0
            if bare_first:
                b = await bare()
                w = await wrapped()
            else:
                w = await wrapped()
                b = await bare()
            if i >= warmup:
                samples.bare_ms.append(b)
                samples.wrapped_ms.append(w)
                samples.inner_ms.append(inner[-1])
                samples.bare_first.append(bare_first)
    finally:
        del client.call_tool  # the class's method again
    return samples


# the servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def everything_http(everything_js: Path = EVERYTHING_JS) -> Iterator[str]:
    """server-everything's streamable HTTP transport on a free port; yields its `/mcp` URL."""
    port = _free_port()
    process = subprocess.Popen(
        ["node", str(everything_js), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (a GET without a session is refused): up
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("server-everything (streamableHttp) did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def server_entry(target: Target, everything_js: Path, http_url: str | None) -> dict[str, Any]:
    """The tools-file entry for a target's server."""
    if target.label == "everything-stdio":
        return {"name": "everything", "command": "node", "args": [str(everything_js), "stdio"]}
    if target.label == "everything-http":
        assert http_url is not None
        return {"name": "everything", "url": http_url}
    return {"name": "time", "command": str(MCP_SERVER_TIME), "args": ["--local-timezone", "UTC"]}


async def measure_target(
    target: Target, *, calls: int, warmup: int, everything_js: Path, http_url: str | None, logs: Path
) -> Samples:
    tools_file = ToolsFile.model_validate({"mcp_servers": [server_entry(target, everything_js, http_url)]})
    catalog = LiveToolCatalog(tools_file, {}, stderr_dir=logs)
    catalog.start()
    try:
        await wait_available(catalog)
        return await measure_overhead(catalog, target.tool, target.arguments, calls=calls, warmup=warmup)
    finally:
        await catalog.close()


# reporting


def write_results(
    out: Path,
    results: list[tuple[Overhead, Samples]],
    options: dict[str, Any],
    in_agent: InAgent | None = None,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    calls_csv = out / "calls.csv"
    with calls_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for overhead, samples in results:
            rows = zip(samples.bare_first, samples.bare_ms, samples.wrapped_ms, samples.own_ms, strict=True)
            for i, (first, b, w, own) in enumerate(rows):
                row = [overhead.target, overhead.transport, overhead.tool, i, first]
                writer.writerow([*row, f"{b:.4f}", f"{w:.4f}", f"{w - b:.4f}", f"{own:.4f}"])
    document = {
        "benchmark": "mcp_overhead",
        "target_ms": TARGET_MS,
        "options": options,
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "results": [asdict(overhead) for overhead, _ in results],
        "in_agent": None if in_agent is None else asdict(in_agent),
    }
    results_json = out / "results.json"
    results_json.write_text(json.dumps(document, indent=2) + "\n")
    return [calls_csv, results_json]


def table(results: list[Overhead]) -> Any:
    from rich.table import Table

    view = Table(title=f"MCP call overhead (ms; budget {TARGET_MS:g} ms added per call)")
    for column in ("target", "calls", "bare p50/p90/p99", "wrapped p50/p90/p99", "added (p50 diff)"):
        view.add_column(column, justify="left" if column == "target" else "right")
    view.add_column("paired diff p50/p90/p99", justify="right")
    view.add_column("chatstack's own p50/p99", justify="right")
    view.add_column("ratio", justify="right")

    def spread(d: Distribution) -> str:
        return f"{d.p50_ms:.3f} / {d.p90_ms:.3f} / {d.p99_ms:.3f}"

    for r in results:
        verdict = "" if r.within_target else " [red](over budget)[/red]"
        view.add_row(
            r.target,
            str(r.calls),
            spread(r.bare),
            spread(r.wrapped),
            f"{r.added_ms:+.3f}{verdict}",
            spread(r.paired),
            f"{r.own.p50_ms:.3f} / {r.own.p99_ms:.3f}",
            f"{r.ratio:.3f}x",
        )
    return view


# running


def run(
    *,
    calls: int = 300,
    warmup: int = 30,
    targets: list[str] | None = None,
    out: Path | None = None,
    everything_js: Path = EVERYTHING_JS,
    agent_runs: int = 0,
) -> Path:
    """Measure every target in turn, write the results, print the table; returns the results folder."""
    from rich.console import Console

    chosen = [TARGETS[name] for name in (targets or list(TARGETS))]
    if any(t.label.startswith("everything") for t in chosen) and not everything_js.exists():
        raise SystemExit(f"{everything_js} is missing: run `make mcp-servers`")
    out = out or Path("bench-results") / f"mcp-overhead-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the table
        console = Console(width=160)
    results: list[tuple[Overhead, Samples]] = []
    for target in chosen:
        console.print(f"{target.label}: {target.tool}, {warmup} warm-up + {calls} rounds")
        with everything_http(everything_js) if target.label == "everything-http" else _no_server() as url:
            samples = asyncio.run(
                measure_target(
                    target, calls=calls, warmup=warmup, everything_js=everything_js, http_url=url, logs=out
                )
            )
        results.append((summarise(target, samples), samples))
    in_agent: InAgent | None = None
    if agent_runs > 0:
        from bench.mcp_in_agent import measure_in_agent

        console.print(f"agent runs: one MCP echo call each (stdio), 3 warm-up + {agent_runs} runs")
        durations = measure_in_agent(agent_runs, 3, everything_js, out / "agent")
        bare = next((o.bare.p50_ms for o, _ in results if o.target == "everything-stdio"), None)
        in_agent = InAgent.of(durations, bare)
    options = {
        "calls": calls,
        "warmup": warmup,
        "targets": [t.label for t in chosen],
        "agent_runs": agent_runs,
    }
    written = write_results(out, results, options, in_agent)
    console.print(table([overhead for overhead, _ in results]))
    if in_agent is not None:
        console.print(in_agent.line())
    console.print(f"Results: {out}/ ({', '.join(path.name for path in written)})")
    return out


@contextmanager
def _no_server() -> Iterator[None]:
    yield None


def parse_targets(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise ValueError(f"unknown target(s) {unknown}; choose from {', '.join(TARGETS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="measured rounds per target (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="unrecorded rounds first (default 30)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated: {', '.join(TARGETS)}")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument(
        "--agent-runs", type=int, default=0, help="also time one MCP call in N agent runs (default 0: skip)"
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0 or args.agent_runs < 0:
        parser.error("--calls must be at least 1, --warmup and --agent-runs at least 0")
    try:
        targets = parse_targets(args.targets)
    except ValueError as exc:
        parser.error(str(exc))
    run(calls=args.calls, warmup=args.warmup, targets=targets, out=args.out, agent_runs=args.agent_runs)


if __name__ == "__main__":
    main()
