"""Settings of the embedded model, read from `CHATSTACK_*` environment variables (and `.env`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _xdg_dir(variable: str, fallback: str) -> Path:
    base = os.environ.get(variable) or str(Path.home() / fallback)
    return Path(base) / "chatstack"


def default_model_cache() -> Path:
    """`$XDG_CACHE_HOME/chatstack` (default `~/.cache/chatstack`): downloads that can be fetched again."""
    return _xdg_dir("XDG_CACHE_HOME", ".cache")


def default_engine_venv() -> Path:
    """`$XDG_DATA_HOME/chatstack/engine-venv`: vLLM's own virtualenv, beside but apart from chatstack's."""
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "engine-venv"


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "chatstack"


class LocalSettings(BaseSettings):
    """Where the embedded model's files live and how its engine runs. Every field is `CHATSTACK_<FIELD>`.

    The API server's `app.settings.Settings` extends this class, so the server has one settings object.
    """

    model_config = SettingsConfigDict(env_prefix="CHATSTACK_", env_file=".env", extra="ignore")

    model: str = ""
    """A catalogue name (`chatstack model list`), a local Hugging Face model folder, or a hub model id.
    Empty means the catalogue's default model."""
    model_precision: Literal["", "bf16", "int4", "int8"] = ""
    """How a catalogue model's weights are held: `bf16`, `int4` or `int8` (weight-only, on PyTorch's CPU
    kernels through chatstack's vLLM plugin); empty means the catalogue's choice for the model. See
    docs/embedded-model.md for what each costs and gains."""
    served_model_name: str = ""
    """The name the engine serves the model under; empty means the catalogue's name, or the folder or id."""
    model_cache: Path = Field(default_factory=default_model_cache)
    engine_venv: Path = Field(default_factory=default_engine_venv)
    engine_python: Path | None = None
    """A Python that has vLLM; default: the engine virtualenv's (`chatstack model install-engine`)."""
    data_dir: Path = Field(default_factory=default_data_dir)
    """The server's database and logs; the engine's log is `<data_dir>/logs/engine.log`."""

    engine: Literal["vllm", "ray"] = "vllm"
    """What hosts the model: `vllm` (vLLM's OpenAI server) or `ray` (a Ray Serve app built with
    `ray.serve.llm`, as the GPU deployments are: backends/serve/local.py). Same port, name and API."""
    engine_host: str = "127.0.0.1"
    engine_port: int = Field(default=8001, ge=1, le=65535)
    engine_max_model_len: int = Field(default=4096, ge=256)
    engine_threads: int = Field(default=0, ge=0)
    """CPU cores the engine computes on; 0 means all of them."""
    engine_kv_cache_gb: int = Field(default=1, ge=1)
    engine_compile: bool = False
    """Let vLLM compile the model with torch.compile (artifacts cached under `<data_dir>/engine-cache`).
    Off by default: on this two-core CPU the eager engine decoded as fast and starts in about 40 s, cold
    or warm, against 55 to 65 s warm and two minutes or more cold when compiling (docs/embedded-model.md)."""
    engine_decode_kernel: bool = True
    """int8 decoding on chatstack's AVX2 kernel (built once per machine, about 35 s); off, or on a CPU
    without AVX2, PyTorch's slower weight-only kernel (docs/embedded-model.md, "A decode kernel")."""
    engine_start_timeout_s: float = Field(default=900.0, gt=0)
    """Longest wait for the engine to answer `/health`, fetch and conversion not included."""
    engine_max_restarts: int = Field(default=5, ge=0)
    """Restarts after crashes before the supervisor gives up (the count resets after a healthy hour)."""
    engine_extra_args: str = ""
    """More `vllm serve` arguments, split like a shell would, e.g. `--enforce-eager` (with `engine=ray`
    they become the app's `engine_kwargs`)."""

    def resolved_engine_python(self) -> Path:
        return self.engine_python or self.engine_venv / "bin" / "python"
