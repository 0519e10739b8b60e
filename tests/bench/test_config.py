"""Configuration: defaults, then a YAML profile, then the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.cli import AGENT_OPTIONS, OPENAI_OPTIONS, bench_app
from bench.config import load_config
from tests.bench.conftest import ReferenceFactory, run_bench


def test_cli_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    file = tmp_path / "bench.yaml"
    file.write_text(
        "base-url: http://x:1/v1\nmodel: from-file\nconcurrency: [1, 3]\nduration_s: 5\nslo: {ttft_ms: 200}\n"
    )
    config = load_config(file, {"model": "from-cli", "rates": [7.0], "slo": {"tpot_ms": 30}})
    assert (config.model, config.concurrency, config.rates, config.duration_s) == (
        "from-cli",
        [1, 3],
        [7.0],
        5,
    )
    assert (config.slo.ttft_ms, config.slo.tpot_ms) == (200, 30)
    assert config.phases == ["warmup", "baseline", "concurrency", "rate"]
    assert config.name == "from-cli"


def test_the_environment_is_not_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL", "from-env")
    monkeypatch.setenv("SEED", "7")
    config = load_config(None, {"base_url": "http://x", "model": "m"})
    assert (config.model, config.seed) == ("m", 0)


def test_a_profile_must_be_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "bench.yaml"
    file.write_text("- model\n- m\n")
    with pytest.raises(ValueError, match="expected a mapping of options"):
        load_config(file, {"base_url": "http://x", "model": "m"})


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


@pytest.mark.parametrize(("command", "options"), [("openai", OPENAI_OPTIONS), ("agent", AGENT_OPTIONS)])
def test_each_option_is_the_field_it_sets(command: str, options: tuple[object, ...]) -> None:
    """A command's options are `BenchConfig` fields: its flags and help come from them."""
    import typer.main

    click_command = typer.main.get_command(bench_app).commands[command]  # type: ignore[attr-defined]
    shown = {param.opts[0]: param.help for param in click_command.params}
    assert len(shown) == len(options)
    assert shown["--duration"] == "Seconds per open-loop rate."
    assert shown["--stop-error-rate"] == "Stop a sweep after a level above this error rate (0-1)."
    assert shown["--config"] == "YAML options file."
    assert ("--slo-ttft-ms" in shown) == (command == "openai")
    assert ("--task-set" in shown) == (command == "agent")


@pytest.mark.slow
def test_a_run_saves_the_merged_options(reference_servers: ReferenceFactory, tmp_path: Path) -> None:
    """Through the real command: the command line over the profile over the defaults, nested
    mappings merged key by key, and `bench agent`-only and renamed options where they belong."""
    server = reference_servers(ttft_ms=5, tpot_ms=1, output_tokens=4)
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "phases: [warmup]\nwarmup_requests: 1\ndataset: fixed\nnum_prompts: 2\ninput_tokens: 8\n"
        "max-tokens: 4\nmodel: from-profile\nslo: {ttft_ms: 900, e2e_ms: 5000}\nseed: 3\n"
    )
    doc = run_bench(
        ["openai", "--config", str(profile), "--base-url", server.url, "--model", "reference",
         "--slo-ttft-ms", "800", "--duration", "2", "--concurrency", "2,3", "--stop-error-rate", "0.25"],
        tmp_path / "out",
    )  # fmt: skip
    config = doc["config"]
    assert (config["model"], config["seed"], config["max_tokens"], config["duration_s"]) == (
        "reference",
        3,
        4,
        2,
    )
    assert config["slo"] == {"ttft_ms": 800, "tpot_ms": None, "e2e_ms": 5000}
    assert config["stop"] == {"max_error_rate": 0.25, "max_latency_growth": 20}
    assert (config["concurrency"], config["rates"]) == ([2, 3], [1, 2, 5, 10])
