"""`results.json`: the configuration, the environment, every level's summary and every request's record."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.runner import RunResult

FORMAT = "chatstack-bench/1"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def result_document(result: RunResult) -> dict[str, Any]:
    """The JSON-ready document for a run (the API key is never written)."""
    config = result.config.model_dump(mode="json")
    if config.get("api_key"):
        config["api_key"] = "***"
    levels = []
    for level in result.levels:
        levels.append(
            {
                "phase": level.plan.phase,
                "level": level.plan.level,
                "open_loop": level.plan.open_loop,
                "concurrency": level.plan.concurrency,
                "summary": level.summary.row,
                "health": asdict(level.summary.health) | {"reliable": level.summary.health.reliable},
                "errors": level.summary.errors,
                "records": [record.to_json(level.origin) for record in level.records],
            }
        )
    prefill = None
    if result.prefill is not None:
        prefill = asdict(result.prefill) | {"tokens_per_s": result.prefill.tokens_per_s}
    document: dict[str, Any] = _finite(
        {
            "format": FORMAT,
            "name": result.config.name,
            "mode": result.config.mode,
            "config": config,
            "environment": result.environment,
            "data": result.data,
            "prefill_fit": prefill,
            "notes": result.notes,
            "levels": levels,
        }
    )
    return document


def write_json(result: RunResult, directory: Path) -> Path:
    path = directory / "results.json"
    path.write_text(json.dumps(result_document(result), indent=1, allow_nan=False))
    return path


def load_results(path: Path) -> dict[str, Any]:
    """A results document from `results.json` or the folder that holds it."""
    file = path / "results.json" if path.is_dir() else path
    data = json.loads(file.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{file} is not a chatstack bench results file")
    return data
