"""Configuration: defaults, then YAML, then the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.config import load_config


def test_cli_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "bench.yaml"
    file.write_text(
        "base-url: http://x:1/v1\nmodel: from-file\nconcurrency: [1, 3]\nduration_s: 5\nslo: {ttft_ms: 200}\n"
    )
    config = load_config(file, {"model": "from-cli", "rates": [7.0], "slo": {"tpot_ms": 30, "ttft_ms": None}})
    assert (config.model, config.concurrency, config.rates, config.duration_s) == (
        "from-cli",
        [1, 3],
        [7.0],
        5,
    )
    assert (config.slo.ttft_ms, config.slo.tpot_ms) == (200, 30)
    assert config.phases == ["warmup", "baseline", "concurrency", "rate"]
    assert config.name == "from-cli"


def test_levels_run_at_their_concurrency() -> None:
    config = load_config(None, {"base_url": "http://x", "model": "m"})
    assert [config.requests_for(c) for c in (1, 4, 8, 16)] == [20, 20, 32, 64]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "http://x"}, "needs --model"),
        ({"base_url": "http://x", "model": "m", "concurrency": [0]}, "at least 1"),
        ({"base_url": "http://x", "model": "m", "phases": ["warmup", "soak"]}, "phases"),
        ({"base_url": "http://x", "model": "m", "rates": [-1.0]}, "positive"),
    ],
)
def test_invalid_options_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_config(None, overrides)
