"""The backends file: named OpenAI-compatible endpoints and how to talk to each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ToolMode = Literal["native", "prompted", "none"]
AnswerStep = Literal["none", "nudge", "inline"]
BackendRole = Literal["general", "tools", "throughput"]
BackendKind = Literal["openai", "embedded"]
AUTO_BACKEND = "auto"
"""Not a backend but a routing choice: tool steps on the `tools` backend, answers on the `throughput` one."""


class BackendConfigError(Exception):
    """The backends file is missing, unreadable or invalid."""


class BackendConfig(BaseModel):
    """One entry of the `backends:` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    kind: BackendKind = "openai"
    """`openai`: a server that runs on its own. `embedded`: the embedded model, whose engine chatstack
    starts, supervises and stops itself, listening at `base_url` under the name `model` (at most one)."""
    base_url: str
    """Up to and including `/v1`, e.g. `http://127.0.0.1:8001/v1`."""
    model: str
    tool_mode: ToolMode = "native"
    api_key_env: str | None = None
    context_length: int = Field(default=8192, ge=256)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0)
    """Longest silence allowed between two streamed chunks."""
    max_tokens: int | None = Field(default=None, ge=1)
    cold_start_timeout_s: float | None = Field(default=None, gt=0)
    """Set for a backend that scales to zero (Ray Serve `min_replicas: 0`): how long a request may wait
    for a replica to start, retrying while the backend refuses. Meanwhile the backend shows as
    `starting` and the run says so. Unset: a failure before the first token is retried once."""
    role: BackendRole = "general"
    """What `auto` routing uses this backend for (see `AUTO_BACKEND`)."""
    fallback: str | None = None
    """Another backend, of the same tool capability, that takes over when this one fails before its
    first token (after one retry)."""
    answer_step: AnswerStep = "none"
    """How the model answers after tool results: `none` (the usual ReAct loop), `nudge` (one more user
    turn asking for the answer, no tools) or `inline` (the question and tool results as plain text, no
    tools). Small models need `nudge` or `inline` to stop repeating their tool call."""
    description: str = ""

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @property
    def supports_tools(self) -> bool:
        return self.tool_mode != "none"

    def api_key(self) -> str | None:
        """The key from the environment variable named by `api_key_env`, read when needed."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class BackendsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: list[BackendConfig]

    @model_validator(mode="after")
    def _unique_names(self) -> BackendsFile:
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate backend names: {', '.join(dupes)}")
        if sum(b.kind == "embedded" for b in self.backends) > 1:
            raise ValueError("at most one backend can be of kind 'embedded': there is one embedded model")
        if AUTO_BACKEND in names:
            raise ValueError(f"{AUTO_BACKEND!r} is reserved for automatic routing; pick another backend name")
        by_name = {b.name: b for b in self.backends}
        for backend in self.backends:
            if backend.fallback is None:
                continue
            other = by_name.get(backend.fallback)
            if other is None or other.name == backend.name:
                raise ValueError(
                    f"backend {backend.name!r}: fallback {backend.fallback!r} is not another backend"
                )
            if other.supports_tools != backend.supports_tools:
                raise ValueError(
                    f"backend {backend.name!r}: fallback {other.name!r} must match its tool support"
                )
        return self


def load_backends(path: Path) -> list[BackendConfig]:
    """Read and validate a backends file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BackendConfigError(f"cannot read backends file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise BackendConfigError(f"backends file {path} is not valid YAML: {exc}") from exc
    try:
        return BackendsFile.model_validate(raw).backends
    except ValidationError as exc:
        raise BackendConfigError(f"backends file {path} is invalid:\n{exc}") from exc
