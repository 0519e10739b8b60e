"""A bench run's configuration: one pydantic model, filled from defaults, then a YAML file, then the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Phase = Literal["warmup", "baseline", "concurrency", "rate"]
ALL_PHASES: tuple[Phase, ...] = ("warmup", "baseline", "concurrency", "rate")


class SloConfig(BaseModel):
    """Objectives for goodput, in milliseconds (unset: not constrained)."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


class StopRule(BaseModel):
    """When a sweep stops at its breaking point instead of running its remaining levels.

    After each concurrency or rate level: stop if its error rate is above `max_error_rate`, or if its
    p90 end-to-end latency is more than `max_latency_growth` times that of the sweep's first level.
    Setting either to 0 disables that rule.
    """

    model_config = ConfigDict(extra="forbid")

    max_error_rate: float = Field(0.5, ge=0, le=1)
    max_latency_growth: float = Field(20.0, ge=0)


class BenchConfig(BaseModel):
    """Everything that decides what a run does; saved with its results."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["openai", "agent"] = "openai"
    base_url: str
    model: str | None = None
    backend: str | None = None
    api_key: str | None = None
    label: str | None = None
    """The run's name in reports and comparisons (default: model or backend)."""

    phases: list[Phase] = Field(default_factory=lambda: list(ALL_PHASES))
    warmup_requests: int = Field(5, ge=0)
    baseline_bins: list[int] = Field(default_factory=lambda: [128, 256, 512, 1024, 2048])
    baseline_requests_per_bin: int = Field(3, ge=1)
    baseline_output_tokens: int = Field(64, ge=1)
    concurrency: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    requests_per_level: int | None = Field(None, ge=1)
    """Closed-loop requests per level; default max(20, 4 x concurrency)."""
    rates: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0, 10.0])
    duration_s: float = Field(30.0, gt=0)
    arrival: Literal["poisson", "constant"] = "poisson"
    max_in_flight: int | None = Field(None, ge=1)

    dataset: Literal["sharegpt", "random", "fixed", "agent"] = "sharegpt"
    num_prompts: int = Field(500, ge=1)
    input_tokens: int = Field(256, ge=1)
    output_tokens: int = Field(128, ge=1)
    random_range_ratio: float = Field(0.5, ge=0, lt=1)
    sharegpt_min_tokens: int = 100
    sharegpt_max_tokens: int = 2048
    max_tokens: int | None = Field(None, ge=1)
    """Overrides every prompt's `max_tokens` (ShareGPT's recorded reply length otherwise)."""
    ignore_eos: bool = False
    tokenizer: str = "auto"
    task_set: str = "natural"
    tasks_file: Path | None = None

    timeout_s: float = Field(300.0, gt=0)
    seed: int = 0
    engine: Literal["auto", "socket", "aiohttp", "httpx"] = "auto"
    slo: SloConfig = Field(default_factory=SloConfig)
    stop: StopRule = Field(default_factory=StopRule)
    late_threshold_ms: float = Field(5.0, gt=0)
    """A request dispatched later than this after its intended start counts as late."""
    out: Path | None = None

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


def load_config(path: Path | None, overrides: dict[str, Any]) -> BenchConfig:
    """Defaults, then the YAML file (if any), then `overrides` (the CLI options that were given)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of options")
        data.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("slo", "stop") and isinstance(value, dict):
            merged = dict(data.get(key) or {})
            merged.update({k: v for k, v in value.items() if v is not None})
            data[key] = merged
        else:
            data[key] = value
    return BenchConfig.model_validate(data)
