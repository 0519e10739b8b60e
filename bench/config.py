"""A bench run's configuration: one pydantic model, filled from defaults, then a YAML profile, then the CLI.

Each option is defined once, here: its type, default, validation and description. The description
is also the option's `--help` text, and a `Flag` beside a field names its command-line option where
that is not the field's own name (`duration_s` is `--duration`); `bench/cli.py` builds the commands'
options from these fields. pydantic-settings merges the sources: the command line over the YAML
profile over the defaults, nested mappings (`slo`, `stop`) key by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

Phase = Literal["warmup", "baseline", "concurrency", "rate"]
ALL_PHASES: tuple[Phase, ...] = ("warmup", "baseline", "concurrency", "rate")


@dataclass(frozen=True)
class Flag:
    """A field's command-line option, where it is not `--` and the field's path in kebab case."""

    name: str | None = None
    envvar: str | None = None


class SloConfig(BaseModel):
    """Objectives for goodput, in milliseconds (unset: not constrained)."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(None, description="Goodput SLO: TTFT in ms.")
    tpot_ms: float | None = Field(None, description="Goodput SLO: TPOT in ms.")
    e2e_ms: float | None = Field(None, description="Goodput SLO: end-to-end latency in ms.")


class StopRule(BaseModel):
    """When a sweep stops at its breaking point instead of running its remaining levels.

    After each concurrency or rate level: stop if its error rate is above `max_error_rate`, or if its
    p90 end-to-end latency is more than `max_latency_growth` times that of the sweep's first level.
    Setting either to 0 disables that rule.
    """

    model_config = ConfigDict(extra="forbid")

    max_error_rate: Annotated[float, Flag("--stop-error-rate")] = Field(
        0.5, ge=0, le=1, description="Stop a sweep after a level above this error rate (0-1)."
    )
    max_latency_growth: Annotated[float, Flag("--stop-latency-growth")] = Field(
        20.0, ge=0, description="...or whose p90 latency grew this many times (0: never)."
    )


# The YAML profile of the run being configured (`load_config` sets it for one validation).
_profile: ContextVar[Path | None] = ContextVar("bench_profile", default=None)


class _YamlProfile(YamlConfigSettingsSource):
    """A YAML profile, where `base-url:` and `base_url:` name the same option."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        loaded = super()._read_file(file_path)
        if not isinstance(loaded, dict):
            raise ValueError(f"{file_path}: expected a mapping of options")
        return {str(key).replace("-", "_"): value for key, value in loaded.items()}


class BenchConfig(BaseSettings):
    """Everything that decides what a run does; saved with its results."""

    model_config = SettingsConfigDict(extra="forbid")

    mode: Literal["openai", "agent"] = "openai"
    base_url: str = Field(description="Where to send requests.")
    model: str | None = Field(None, description="The served model name.")
    backend: str | None = Field(None, description="chatstack backend to answer with (default: its default).")
    api_key: Annotated[str | None, Flag(envvar="CHATSTACK_BENCH_API_KEY")] = Field(
        None, description="Bearer token, if needed."
    )
    # Also the run's name in comparisons; default: model or backend.
    label: str | None = Field(None, description="The run's name in reports.")

    phases: list[Phase] = Field(
        default_factory=lambda: list(ALL_PHASES),
        description="Comma-separated: warmup,baseline,concurrency,rate.",
    )
    warmup_requests: Annotated[int, Flag("--warmup")] = Field(
        5, ge=0, description="Warm-up requests (discarded)."
    )
    baseline_bins: list[int] = Field(
        default_factory=lambda: [128, 256, 512, 1024, 2048],
        description="Baseline prompt lengths, e.g. 128,256,512,1024,2048.",
    )
    baseline_requests_per_bin: int = Field(3, ge=1)
    baseline_output_tokens: int = Field(64, ge=1)
    concurrency: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16], description="Closed-loop levels, e.g. 1,2,4,8,16."
    )
    requests_per_level: Annotated[int | None, Flag("--requests")] = Field(
        None, ge=1, description="Requests per concurrency level (default max(20, 4 x c))."
    )
    rates: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 5.0, 10.0],
        description="Open-loop rates in requests/s, e.g. 1,2,5,10.",
    )
    duration_s: Annotated[float, Flag("--duration")] = Field(
        30.0, gt=0, description="Seconds per open-loop rate."
    )
    arrival: Literal["poisson", "constant"] = Field(
        "poisson", description="poisson | constant arrivals in the rate phase."
    )
    max_in_flight: int | None = Field(None, ge=1)

    dataset: Literal["sharegpt", "random", "fixed", "agent"] = Field(
        "sharegpt", description="sharegpt | random | fixed (agent mode also: agent)."
    )
    num_prompts: int = Field(500, ge=1, description="Prompts to sample from the dataset.")
    input_tokens: int = Field(256, ge=1, description="random/fixed datasets: prompt length.")
    output_tokens: int = Field(128, ge=1, description="random/fixed datasets: output length.")
    random_range_ratio: float = Field(0.5, ge=0, lt=1)
    sharegpt_min_tokens: int = 100
    sharegpt_max_tokens: int = 2048
    # Without it, each ShareGPT prompt asks for its recorded reply's length.
    max_tokens: int | None = Field(
        None, ge=1, description="max_tokens for every request (overrides the dataset's)."
    )
    ignore_eos: bool = Field(False, description="Ask the server to ignore EOS (vLLM).")
    tokenizer: str = Field("auto", description="auto | server | estimate | path to tokenizer.json.")
    task_set: str = Field("natural", description="natural (real models) | scripted (test backend).")
    tasks_file: Path | None = Field(None, description="A task file shaped like agent_tasks.yaml.")

    timeout_s: Annotated[float, Flag("--timeout")] = Field(
        300.0, gt=0, description="Seconds before a request counts as failed."
    )
    seed: int = Field(0, description="Seed for sampling and arrivals.")
    engine: Literal["auto", "socket", "aiohttp", "httpx"] = Field(
        "auto", description="auto | socket | aiohttp | httpx: the HTTP client the bench uses."
    )
    slo: SloConfig = Field(default_factory=SloConfig)
    stop: StopRule = Field(default_factory=StopRule)
    late_threshold_ms: float = Field(5.0, gt=0)
    """A request dispatched later than this after its intended start counts as late."""
    out: Path | None = Field(None, description="Results folder (CSVs, results.json, report.html).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The command line (the init arguments) over the profile; the environment is not a source
        # (only --api-key reads one variable, through the CLI).
        return init_settings, _YamlProfile(settings_cls, yaml_file=_profile.get())

    @field_validator("concurrency")
    @classmethod
    def _positive_levels(cls, value: list[int]) -> list[int]:
        if any(c < 1 for c in value):
            raise ValueError("concurrency levels must be at least 1")
        return value

    @field_validator("rates")
    @classmethod
    def _positive_rates(cls, value: list[float]) -> list[float]:
        if any(r <= 0 for r in value):
            raise ValueError("rates must be positive")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> BenchConfig:
        if self.mode == "openai" and not self.model:
            raise ValueError("openai mode needs --model (the served model name)")
        if self.mode == "openai" and self.dataset == "agent":
            raise ValueError("the agent task set is for `bench agent`")
        return self

    def requests_for(self, concurrency: int) -> int:
        """Requests in a closed-loop level: enough that it really runs at its concurrency."""
        return self.requests_per_level or max(20, 4 * concurrency)

    @property
    def name(self) -> str:
        return self.label or self.model or self.backend or "run"


@contextmanager
def _reading(profile: Path | None) -> Iterator[None]:
    token = _profile.set(profile)
    try:
        yield
    finally:
        _profile.reset(token)


def load_config(profile: Path | None, cli: dict[str, Any]) -> BenchConfig:
    """Defaults, then the YAML `profile` (if any), then `cli`: the options given on the command line,
    nested like the model (`{"slo": {"ttft_ms": 200}}`)."""
    with _reading(profile):
        return BenchConfig(**cli)
