"""`chatstack bench`: measure an OpenAI-compatible endpoint or chatstack's agent runs.

    chatstack bench openai --base-url http://127.0.0.1:8001/v1 --model qwen2.5-coder-0.5b-instruct
    chatstack bench agent --base-url http://127.0.0.1:8000 --backend local
    chatstack bench report results/qwen results/deepseek-pd --out compare.html

Every option can also come from a YAML profile (`--config`), under its `BenchConfig` field's name
(`duration_s` for `--duration`); options given on the command line win. Results go to `--out` (default
`bench-results/<name>-<time>/`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.markup import escape

from bench.config import BenchConfig, Flag, load_config

bench_app = typer.Typer(
    help="Benchmark an OpenAI-compatible endpoint or chatstack's agent (TTFT, TPOT, ITL, goodput).",
    no_args_is_help=True,
    add_completion=False,
)


# Each command's options, in `--help` order: paths of `BenchConfig` fields (their help, type and
# flag come from the field), `config` for the YAML profile, or (path, help) where a command says more.
OPENAI_OPTIONS = (
    "base_url", "model", "phases", "concurrency", "rates", "duration_s", "dataset", "num_prompts",
    "max_tokens", "api_key", "seed", "config", "out", "label", "tokenizer", "requests_per_level",
    "arrival", "timeout_s", "slo.ttft_ms", "slo.tpot_ms", "slo.e2e_ms", "stop.max_error_rate",
    "stop.max_latency_growth", "engine", "warmup_requests", "input_tokens", "output_tokens",
    "baseline_bins", "ignore_eos",
)  # fmt: skip
AGENT_OPTIONS = (
    "base_url", "backend", "phases", "concurrency", "rates", "duration_s", "dataset", "num_prompts",
    ("max_tokens", "Accepted for symmetry; chatstack decides its answers' length."),
    "api_key", "seed", "config", "out", "label", "task_set", "tasks_file", "requests_per_level",
    "arrival", "timeout_s", "stop.max_error_rate", "stop.max_latency_growth", "engine",
    "warmup_requests", "input_tokens", "output_tokens",
)  # fmt: skip
ConfigFile = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML options file.")
]
_KEYWORD = inspect.Parameter.KEYWORD_ONLY


def _field(path: str) -> FieldInfo:
    model: type[BaseModel] = BenchConfig
    *parents, name = path.split(".")
    for parent in parents:
        model = model.model_fields[parent].annotation  # type: ignore[assignment]
    return model.model_fields[name]


def _cli_type(annotation: Any) -> Any:
    """What the command line reads for a field: lists as comma-separated text, choices as text."""
    if get_origin(annotation) in (Union, UnionType):  # `X | None`
        (annotation,) = (t for t in get_args(annotation) if t is not type(None))
    return str if get_origin(annotation) in (list, Literal) else annotation


def _parameter(option: str | tuple[str, str]) -> inspect.Parameter:
    path, help_text = option if isinstance(option, tuple) else (option, None)
    if path == "config":
        return inspect.Parameter("config", _KEYWORD, default=None, annotation=ConfigFile)
    field = _field(path)
    flag = next((m for m in field.metadata if isinstance(m, Flag)), Flag())
    name = flag.name or "--" + path.replace(".", "-").replace("_", "-")
    kind = _cli_type(field.annotation)
    if kind is bool:
        name = f"{name}/--no-{name.removeprefix('--')}"
    cli_option = typer.Option(name, envvar=flag.envvar, help=help_text or field.description)
    annotation = Annotated[kind | None, cli_option]  # type: ignore[valid-type]
    return inspect.Parameter(path.replace(".", "__"), _KEYWORD, default=None, annotation=annotation)


def _parsed(path: str, value: Any) -> Any:
    """A command-line value as the field takes it: comma-separated lists split."""
    annotation = _field(path).annotation
    if get_origin(annotation) is not list:
        return value
    (item,) = get_args(annotation)
    kind = str if get_origin(item) is Literal else item
    try:
        return [kind(part.strip()) for part in value.split(",") if part.strip()] or None
    except ValueError as exc:
        raise typer.BadParameter(f"expected a comma-separated list of numbers, got {value!r}") from exc


def _cli_values(values: dict[str, Any]) -> dict[str, Any]:
    """The options that were given, nested like `BenchConfig` (`slo__ttft_ms` is `slo.ttft_ms`)."""
    given: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or (value := _parsed(key.replace("__", "."), value)) is None:
            continue
        *parents, name = key.split("__")
        nested = given
        for parent in parents:
            nested = nested.setdefault(parent, {})
        nested[name] = value
    return given


def _command(
    mode: Literal["openai", "agent"],
    options: tuple[str | tuple[str, str], ...],
    doc: str,
    presets: dict[str, Any] | None = None,
) -> Callable[..., None]:
    """A command whose options are `options`; `presets` are its values for options not given."""

    def command(config: Path | None = None, **values: Any) -> None:
        given = {"mode": mode, **(presets or {}), **_cli_values(values)}
        _run(_config_or_exit(config, given))

    parameters = [_parameter(option) for option in options]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    return command


def _run(config: BenchConfig) -> Path:
    """Load the workload, run every phase, write the results; returns the results folder."""
    import uvloop

    from bench.datasets.loader import load_workload
    from bench.outputs.console import ConsoleProgress, error_report, summary_tables
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
    report = out / "report.html"
    report.write_text(render_report([result_document(result)], f"chatstack bench: {config.name}"))
    written = [*write_phase_csvs(result, out), write_json(result, out), report]
    for table in summary_tables(result):
        console.print(table)
    for line in error_report(result):
        console.print(line)
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
    console.print(escape(f"Results: {out}/ ({', '.join(path.name for path in written)})"))
    return out


def _config_or_exit(path: Path | None, overrides: dict[str, Any]) -> BenchConfig:
    from pydantic import ValidationError

    try:
        config = load_config(path, overrides)
    except (ValidationError, ValueError) as exc:
        typer.echo(f"chatstack bench: invalid options:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    return config


bench_app.command("openai")(
    _command(
        "openai",
        OPENAI_OPTIONS,
        "Measure an OpenAI-compatible endpoint (vLLM, Ray Serve, chatstack's /v1, nginx).",
    )
)
bench_app.command("agent")(
    _command(
        "agent",
        AGENT_OPTIONS,
        "Measure chatstack's agent runs over its SSE API (time to first event and answer, tools, overhead).",
        # The task set unless the command line asks for another dataset (a profile's does not count).
        presets={"dataset": "agent"},
    )
)


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


@bench_app.command("mcp")
def mcp_command(
    calls: Annotated[int, typer.Option(min=1, help="Measured rounds per target.")] = 300,
    warmup: Annotated[int, typer.Option(min=0, help="Unrecorded rounds first.")] = 30,
    targets: Annotated[
        str, typer.Option(help="Comma-separated: everything-stdio, everything-http, time-stdio.")
    ] = "everything-stdio,everything-http,time-stdio",
    out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
    agent_runs: Annotated[
        int, typer.Option(min=0, help="Also time one MCP call in N agent runs (0: skip).")
    ] = 0,
) -> None:
    """Measure what chatstack's MCP client adds per tool call (`python -m bench.mcp_overhead`)."""
    from bench.mcp_overhead import parse_targets, run

    try:
        chosen = parse_targets(targets)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--targets") from exc
    run(calls=calls, warmup=warmup, targets=chosen, out=out, agent_runs=agent_runs)
