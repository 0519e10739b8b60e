"""Compare the embedded model's precisions through chatstack's agent, alternating them on the same machine.

For each repetition and each precision in turn (bf16, int8, bf16, int8, ...: a shared machine's load
drift then hits both alike), starts `chatstack serve` with `CHATSTACK_MODEL_PRECISION` set, its own data
dir, free ports and search answered by the canned server; runs `chatstack bench agent` with
`bench/profiles/embedded-agent.yaml` (the embedded task set once); reads the engine's prefix-cache
counters before and after; measures decode at one and four streams and the engine's memory; stops it.

    .venv/bin/python -m tests.local.precision_runs --precisions bf16,int8 --repeats 3 --out bench-results/p14

Each run appends one JSON line to `<out>/runs.jsonl` (answers judged by `tasks.is_correct`); the summary
printed at the end (and by `--summarize`) is per precision and tag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from backends.local.catalogue import get_model
from tests.local.bench_engine import engine_memory_gb, streams
from tests.local.canned_search import canned_search_server
from tests.local.tasks import TASKS, is_correct
from tests.support.processes import BIN, ROOT, free_port, start_process

PROFILE = ROOT / "bench" / "profiles" / "embedded-agent.yaml"
_COUNTER = re.compile(r"^(vllm:prefix_cache_(?:hits|queries))(?:_total)?(?:\{[^}]*\})?\s+([0-9.eE+-]+)$")


def prefix_cache_counters(engine_url: str) -> dict[str, float]:
    """vLLM's cumulative prefix-cache counters (tokens looked up, tokens found) from its /metrics."""
    text = httpx.get(f"{engine_url}/metrics", timeout=10).text
    counters: dict[str, float] = {}
    for line in text.splitlines():
        match = _COUNTER.match(line)
        if match:
            name = match.group(1).rsplit("_", 1)[-1]
            counters[name] = counters.get(name, 0.0) + float(match.group(2))
    return counters


def engine_pid(port: int) -> int | None:
    """The vLLM server process listening on `port` (found by its command line)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in args and str(port).encode() in args:
            return int(entry.name)
    return None


def wait_backend_up(url: str, timeout: float = 120) -> float:
    """Seconds until chatstack reports the `local` backend up."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            data = httpx.get(f"{url}/api/backends", timeout=5).json()
            if any(b.get("name") == "local" and b.get("health") == "up" for b in data.get("items", [])):
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"`local` not up after {timeout} s")


def judge(results: Path) -> list[dict[str, Any]]:
    """Each answer of a bench run with the stricter checker's verdict and its per-answer numbers."""
    document = json.loads(results.read_text())
    by_prompt = {f"{kind}-{i + 1:02d}": task for i, (task, kind) in enumerate(
        (t, {"calculator": "calc", "search": "search", "none": "none"}[t.kind]) for t in TASKS)}  # fmt: skip
    answers = []
    for level in document["levels"]:
        if level["phase"] == "warmup":
            continue
        for record in level["records"]:
            task = by_prompt[record["task_id"]]
            start = record["intended_at_ms"] or 0.0

            def since(key: str, rec: dict[str, Any] = record, at: float = start) -> float | None:
                return round((rec[key] - at) / 1000, 3) if rec.get(key) else None

            calls = max(record["llm_calls"], 1)
            answers.append(
                {
                    "task": record["task_id"],
                    "kind": task.kind,
                    "ok": record["error"] is None,
                    "correct": record["error"] is None and is_correct(task, record["answer"]),
                    "prose_arithmetic": record.get("prose_arithmetic"),
                    "total_s": since("finished_at_ms"),
                    "ttft_s": since("first_token_at_ms"),
                    "first_answer_token_s": since("first_answer_token_at_ms"),
                    "llm_s_per_step": round(record["llm_ms"] / 1000 / calls, 3),
                    "llm_calls": record["llm_calls"],
                    "tools": record["tool_names"],
                    "completion_tokens": record["output_tokens"],
                    "prompt_tokens": record["prompt_tokens"],
                    "answer": record["answer"][:300],
                    "error": record["error"],
                }
            )
    return answers


def one_run(
    precision: str, rep: int, tag: str, out: Path, search_url: str, decode_tokens: int, concurrency: int
) -> dict[str, Any]:
    spec = get_model()
    name = f"{tag}-{precision}-{rep}"
    data_dir = out / name
    data_dir.mkdir(parents=True, exist_ok=True)
    engine_port, port = free_port(), free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    entry = {
        "name": "local",
        "kind": "embedded",
        "base_url": f"{engine_url}/v1",
        "model": spec.served_name,
        "tool_mode": "native",
        "answer_step": "inline",
        "context_length": 4096,
        "read_timeout_s": 300,
    }
    backends = data_dir / "backends.yaml"
    backends.write_text(yaml.safe_dump({"backends": [entry]}))
    env = {
        "CHATSTACK_LOG_LEVEL": "INFO",
        "CHATSTACK_MODEL_PRECISION": precision,
        "CHATSTACK_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'chatstack.db'}",
        "CHATSTACK_BACKENDS_FILE": str(backends),
        "CHATSTACK_DEFAULT_BACKEND": "local",
        "CHATSTACK_DATA_DIR": str(data_dir),
        "CHATSTACK_SEARCH_PROVIDER": "searxng",
        "CHATSTACK_SEARXNG_URL": search_url,
        "CHATSTACK_HEALTH_INTERVAL_S": "2",
    }
    started = time.monotonic()
    server = start_process(
        [str(BIN / "chatstack"), "serve", "--port", str(port)],
        health_url=f"{engine_url}/health",
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        log_path=data_dir / "chatstack.log",
        timeout=900,
    )
    run: dict[str, Any] = {"precision": precision, "rep": rep, "tag": tag, "concurrency": concurrency}
    run["load_before"] = os.getloadavg()
    profile = PROFILE
    if concurrency > 1:  # the task set once, `concurrency` tasks at a time (a busy machine: more done)
        profile = data_dir / "profile.yaml"
        options = yaml.safe_load(PROFILE.read_text())
        options |= {"phases": ["concurrency"], "concurrency": [concurrency], "requests_per_level": len(TASKS)}
        profile.write_text(yaml.safe_dump(options))
    try:
        run["engine_start_s"] = round(time.monotonic() - started, 1)
        run["backend_up_after_s"] = round(wait_backend_up(server.url), 1)
        before = prefix_cache_counters(engine_url)
        bench_out = data_dir / "bench"
        subprocess.run(
            [str(BIN / "chatstack"), "bench", "agent", "--base-url", server.url, "--config", str(profile),
             "--label", name, "--out", str(bench_out)],
            cwd=ROOT, check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
        after = prefix_cache_counters(engine_url)
        queries = after.get("queries", 0.0) - before.get("queries", 0.0)
        hits = after.get("hits", 0.0) - before.get("hits", 0.0)
        run["prefix_cache"] = {
            "queries": queries,
            "hits": hits,
            "hit_rate": round(hits / queries, 3) if queries else None,
        }
        run["answers"] = judge(bench_out / "results.json")
        if decode_tokens:
            one = asyncio.run(streams(f"{engine_url}/v1", spec.served_name, 1, decode_tokens))
            four = asyncio.run(streams(f"{engine_url}/v1", spec.served_name, 4, decode_tokens))
            run["decode_1"], run["decode_4"] = one, four
        pid = engine_pid(engine_port)
        run["memory"] = engine_memory_gb(pid) if pid else None
        run["load_after"] = os.getloadavg()
    finally:
        server.stop(timeout=60)
    while engine_pid(engine_port) is not None:  # the engine's workers end with the supervisor
        time.sleep(1)
    with (out / "runs.jsonl").open("a") as handle:
        handle.write(json.dumps(run) + "\n")
    return run


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarize(out: Path) -> Iterator[str]:
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["tag"], run["precision"]), []).append(run)
    for (tag, precision), group in groups.items():
        answers = [a for run in group for a in run.get("answers", [])]
        correct = [sum(a["correct"] for a in run.get("answers", [])) for run in group]
        prose = [a["prose_arithmetic"] for a in answers if a["prose_arithmetic"] is not None]
        hits = sum(r["prefix_cache"]["hits"] for r in group if r.get("prefix_cache"))
        queries = sum(r["prefix_cache"]["queries"] for r in group if r.get("prefix_cache"))
        one = [r["decode_1"]["per_stream_tokens_per_s"] for r in group if r.get("decode_1")]
        four = [r["decode_4"]["aggregate_tokens_per_s"] for r in group if r.get("decode_4")]
        row = {
            "tag": tag,
            "precision": precision,
            "runs": len(group),
            "correct_per_run": correct,
            "correct_of": len(TASKS),
            "median_total_s": _median([a["total_s"] for a in answers if a["total_s"]]),
            "median_ttft_s": _median([a["ttft_s"] for a in answers if a["ttft_s"]]),
            "median_first_answer_token_s": _median(
                [a["first_answer_token_s"] for a in answers if a["first_answer_token_s"]]
            ),
            "median_llm_s_per_step": _median([a["llm_s_per_step"] for a in answers if a["ok"]]),
            "mean_completion_tokens": round(statistics.mean([a["completion_tokens"] for a in answers]), 1)
            if answers
            else None,
            "median_completion_tokens": _median([a["completion_tokens"] for a in answers]),
            "prose_arithmetic": f"{sum(prose)}/{len(prose)}",
            "prefix_hit_rate": round(hits / queries, 3) if queries else None,
            "decode_1": [round(v, 1) for v in one],
            "decode_4": [round(v, 1) for v in four],
            "pss_gb": [r["memory"]["pss_gb"] for r in group if r.get("memory")],
            "engine_start_s": [r.get("engine_start_s") for r in group],
        }
        yield json.dumps(row)


def main() -> None:
    parser = argparse.ArgumentParser(description="Alternate precisions through chatstack's agent.")
    parser.add_argument("--precisions", default="bf16,int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="base", help="names this series (e.g. the prompt version)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1, help="tasks run at a time")
    parser.add_argument("--decode-tokens", type=int, default=128, help="0: skip the decode measurement")
    parser.add_argument("--summarize", action="store_true", help="only print the summary of --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        with canned_search_server() as (search_url, _):
            for rep in range(1, args.repeats + 1):
                for precision in args.precisions.split(","):
                    run = one_run(
                        precision, rep, args.tag, args.out, search_url, args.decode_tokens, args.concurrency
                    )
                    correct = sum(a["correct"] for a in run.get("answers", []))
                    print(f"{args.tag} {precision} rep {rep}: {correct}/{len(TASKS)}", flush=True)
    for line in summarize(args.out):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
