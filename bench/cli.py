"""`chatstack bench`: measure an OpenAI-compatible endpoint or chatstack's agent runs.

    chatstack bench openai --base-url http://127.0.0.1:8001/v1 --model qwen2.5-coder-0.5b-instruct
    chatstack bench agent --base-url http://127.0.0.1:8000 --backend local
    chatstack bench report results/qwen results/deepseek-pd --out compare.html

Every option can also come from a YAML file (`--config`, same names with underscores); options given
on the command line win. Results go to `--out` (default `bench-results/<name>-<time>/`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bench.config import BenchConfig, load_config

bench_app = typer.Typer(
    help="Benchmark an OpenAI-compatible endpoint or chatstack's agent (TTFT, TPOT, ITL, goodput).",
    no_args_is_help=True,
    add_completion=False,
)


def _csv(value: str | None, kind: type[float] | type[int] = int) -> list[Any] | None:
    if value is None:
        return None
    try:
        return [kind(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"expected a comma-separated list of numbers, got {value!r}") from exc


def _phases(value: str | None) -> list[str] | None:
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


BaseUrl = Annotated[str | None, typer.Option("--base-url", help="Where to send requests.")]
Phases = Annotated[str | None, typer.Option(help="Comma-separated: warmup,baseline,concurrency,rate.")]
Concurrency = Annotated[str | None, typer.Option(help="Closed-loop levels, e.g. 1,2,4,8,16.")]
Rates = Annotated[str | None, typer.Option(help="Open-loop rates in requests/s, e.g. 1,2,5,10.")]
Duration = Annotated[float | None, typer.Option(help="Seconds per open-loop rate.")]
Dataset = Annotated[str | None, typer.Option(help="sharegpt | random | fixed (agent mode also: agent).")]
NumPrompts = Annotated[int | None, typer.Option(help="Prompts to sample from the dataset.")]
MaxTokens = Annotated[
    int | None, typer.Option(help="max_tokens for every request (overrides the dataset's).")
]
ApiKey = Annotated[
    str | None, typer.Option(envvar="CHATSTACK_BENCH_API_KEY", help="Bearer token, if needed.")
]
Seed = Annotated[int | None, typer.Option(help="Seed for sampling and arrivals.")]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML options file.")
]
Out = Annotated[Path | None, typer.Option(help="Results folder (CSVs, results.json, report.html).")]
Label = Annotated[str | None, typer.Option(help="The run's name in reports.")]
Tokenizer = Annotated[str | None, typer.Option(help="auto | server | estimate | path to tokenizer.json.")]
Requests = Annotated[
    int | None, typer.Option(help="Requests per concurrency level (default max(20, 4 x c)).")
]
Arrival = Annotated[str | None, typer.Option(help="poisson | constant arrivals in the rate phase.")]
Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Seconds before a request counts as failed.")
]
SloTtft = Annotated[float | None, typer.Option(help="Goodput SLO: TTFT in ms.")]
SloTpot = Annotated[float | None, typer.Option(help="Goodput SLO: TPOT in ms.")]
SloE2e = Annotated[float | None, typer.Option(help="Goodput SLO: end-to-end latency in ms.")]
StopErrors = Annotated[
    float | None, typer.Option(help="Stop a sweep after a level above this error rate (0-1).")
]
StopGrowth = Annotated[
    float | None, typer.Option(help="...or whose p90 latency grew this many times (0: never).")
]
Engine = Annotated[
    str | None, typer.Option(help="auto | socket | aiohttp | httpx: the HTTP client the bench uses.")
]
Warmup = Annotated[int | None, typer.Option(help="Warm-up requests (discarded).")]
InputTokens = Annotated[int | None, typer.Option(help="random/fixed datasets: prompt length.")]
OutputTokens = Annotated[int | None, typer.Option(help="random/fixed datasets: output length.")]
BaselineBins = Annotated[
    str | None, typer.Option(help="Baseline prompt lengths, e.g. 128,256,512,1024,2048.")
]


def _overrides(**options: Any) -> dict[str, Any]:
    """A command's options as `BenchConfig` fields; None where an option was not given."""
    options["phases"] = _phases(options["phases"])
    options["concurrency"] = _csv(options["concurrency"])
    options["rates"] = _csv(options["rates"], float)
    slo = {
        "ttft_ms": options.pop("slo_ttft_ms", None),
        "tpot_ms": options.pop("slo_tpot_ms", None),
        "e2e_ms": options.pop("slo_e2e_ms", None),
    }
    stop = {
        "max_error_rate": options.pop("stop_error_rate"),
        "max_latency_growth": options.pop("stop_latency_growth"),
    }
    options["slo"] = slo if any(v is not None for v in slo.values()) else None
    options["stop"] = stop if any(v is not None for v in stop.values()) else None
    options["duration_s"] = options.pop("duration")
    options["timeout_s"] = options.pop("timeout")
    options["requests_per_level"] = options.pop("requests")
    options["warmup_requests"] = options.pop("warmup")
    options["baseline_bins"] = _csv(options.pop("baseline_bins", None))
    return options


def _run_command(mode: str, config: Path | None, **options: Any) -> None:
    """Run a command from its parameters (its `locals()`): each is the config option of the same name,
    except `config`, the YAML file they override."""
    _run(_config_or_exit(config, _overrides(mode=mode, **options)))


def _run(config: BenchConfig) -> Path:
    """Load the workload, run every phase, write the results; returns the results folder."""
    import uvloop

    from bench.datasets.loader import load_workload
    from bench.outputs.console import ConsoleProgress, summary_tables
    from bench.outputs.csv_files import write_phase_csvs
    from bench.outputs.html_report import render_report
    from bench.outputs.json_file import result_document, write_json
    from bench.runner import run_benchmark
    from bench.targets.agent import AgentTarget
    from bench.targets.base import Target
    from bench.targets.openai import OpenAITarget

    console = Console()
    if not console.is_terminal:  # logs and CI: wide enough for the summary tables
        console = Console(width=160)
    out = (
        config.out
        or Path("bench-results") / f"{config.name.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out.mkdir(parents=True, exist_ok=True)

    async def main() -> Any:
        workload = await load_workload(config)
        console.print(
            f"[bold]{config.name}[/bold]: {len(workload.prompts)} prompts ({workload.info})"
            f" → {config.base_url}"
        )
        target: Target = (
            AgentTarget(config, workload.tasks) if config.mode == "agent" else OpenAITarget(config)
        )
        tasks = workload.prompts if config.mode == "agent" and config.dataset == "agent" else None
        progress = ConsoleProgress(console)
        try:
            result = await run_benchmark(config, target, workload.prompts, progress, tasks)
        finally:
            progress.close()
        result.data = workload.info
        return result

    result = uvloop.run(main())
    write_phase_csvs(result, out)
    write_json(result, out)
    (out / "report.html").write_text(
        render_report([result_document(result)], f"chatstack bench: {config.name}")
    )
    for table in summary_tables(result):
        console.print(table)
    if result.prefill is not None and result.prefill.ms_per_token <= 0:
        console.print(
            "Prefill fit: TTFT does not grow with prompt length here "
            f"({result.prefill.intercept_ms:.1f} ms flat)"
        )
    elif result.prefill is not None:
        fit = result.prefill
        console.print(
            f"Prefill fit: TTFT ≈ {fit.intercept_ms:.1f} ms + {fit.ms_per_token * 1000:.1f} µs/token "
            f"(≈ {fit.tokens_per_s:,.0f} tokens/s, R² {fit.r_squared:.3f})"
        )
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"Results: {out}/ (baseline.csv, concurrency.csv, rate.csv, results.json, report.html)")
    return out


def _config_or_exit(path: Path | None, overrides: dict[str, Any]) -> BenchConfig:
    from pydantic import ValidationError

    try:
        config = load_config(path, overrides)
    except (ValidationError, ValueError) as exc:
        typer.echo(f"chatstack bench: invalid options:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    return config


@bench_app.command("openai")
def openai_command(
    base_url: BaseUrl = None,
    model: Annotated[str | None, typer.Option(help="The served model name.")] = None,
    phases: Phases = None,
    concurrency: Concurrency = None,
    rates: Rates = None,
    duration: Duration = None,
    dataset: Dataset = None,
    num_prompts: NumPrompts = None,
    max_tokens: MaxTokens = None,
    api_key: ApiKey = None,
    seed: Seed = None,
    config: ConfigFile = None,
    out: Out = None,
    label: Label = None,
    tokenizer: Tokenizer = None,
    requests: Requests = None,
    arrival: Arrival = None,
    timeout: Timeout = None,
    slo_ttft_ms: SloTtft = None,
    slo_tpot_ms: SloTpot = None,
    slo_e2e_ms: SloE2e = None,
    stop_error_rate: StopErrors = None,
    stop_latency_growth: StopGrowth = None,
    engine: Engine = None,
    warmup: Warmup = None,
    input_tokens: InputTokens = None,
    output_tokens: OutputTokens = None,
    baseline_bins: BaselineBins = None,
    ignore_eos: Annotated[bool | None, typer.Option(help="Ask the server to ignore EOS (vLLM).")] = None,
) -> None:
    """Measure an OpenAI-compatible endpoint (vLLM, Ray Serve, chatstack's /v1, nginx)."""
    _run_command("openai", **locals())


@bench_app.command("agent")
def agent_command(
    base_url: BaseUrl = None,
    backend: Annotated[
        str | None, typer.Option(help="chatstack backend to answer with (default: its default).")
    ] = None,
    phases: Phases = None,
    concurrency: Concurrency = None,
    rates: Rates = None,
    duration: Duration = None,
    dataset: Dataset = None,
    num_prompts: NumPrompts = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Accepted for symmetry; chatstack decides its answers' length.")
    ] = None,
    api_key: ApiKey = None,
    seed: Seed = None,
    config: ConfigFile = None,
    out: Out = None,
    label: Label = None,
    task_set: Annotated[
        str | None, typer.Option(help="natural (real models) | scripted (test backend).")
    ] = None,
    tasks_file: Annotated[Path | None, typer.Option(help="A task file shaped like agent_tasks.yaml.")] = None,
    requests: Requests = None,
    arrival: Arrival = None,
    timeout: Timeout = None,
    stop_error_rate: StopErrors = None,
    stop_latency_growth: StopGrowth = None,
    engine: Engine = None,
    warmup: Warmup = None,
    input_tokens: InputTokens = None,
    output_tokens: OutputTokens = None,
) -> None:
    """Measure chatstack's agent runs over its SSE API (time to first event and answer, tools, overhead)."""
    dataset = dataset or "agent"  # the task set unless the command line asks for another dataset
    _run_command("agent", **locals())


@bench_app.command("report")
def report_command(
    runs: Annotated[
        list[Path], typer.Argument(help="Results folders (or results.json files) to put side by side.")
    ],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("bench-report.html"),
    title: Annotated[str, typer.Option(help="The report's title.")] = "chatstack bench report",
) -> None:
    """Combine runs into one HTML report (e.g. Qwen vs DeepSeek, with and without P/D)."""
    from bench.outputs.html_report import render_report
    from bench.outputs.json_file import load_results

    try:
        docs = [load_results(path) for path in runs]
    except (OSError, ValueError) as exc:
        typer.echo(f"chatstack bench: {exc}", err=True)
        raise typer.Exit(2) from exc
    out.write_text(render_report(docs, title))
    typer.echo(f"Wrote {out} ({len(docs)} runs)")
