"""`chatstack model ...` commands that need neither the network nor the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.local.cli import model_app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTACK_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHATSTACK_ENGINE_VENV", str(tmp_path / "venv"))
    monkeypatch.delenv("CHATSTACK_MODEL", raising=False)
    monkeypatch.delenv("CHATSTACK_ENGINE_PYTHON", raising=False)


def test_list_shows_the_catalogue_and_the_cache() -> None:
    result = runner.invoke(model_app, ["list"])
    assert result.exit_code == 0
    assert "qwen2.5-coder-0.5b" in result.stdout
    assert "qwen2.5-coder-1.5b" in result.stdout
    assert "not fetched" in result.stdout


def test_unknown_model_is_a_usage_error() -> None:
    result = runner.invoke(model_app, ["fetch", "--model", "gpt-5"])
    assert result.exit_code == 2
    assert "no model named 'gpt-5' in the catalogue" in result.stderr


def test_path_of_a_model_not_fetched_says_how_to_fetch_it() -> None:
    result = runner.invoke(model_app, ["path", "--model", "qwen2.5-coder-1.5b"])
    assert result.exit_code == 1
    assert "chatstack model fetch --model qwen2.5-coder-1.5b" in result.stderr


def test_status_without_the_engine() -> None:
    result = runner.invoke(model_app, ["status"])
    assert result.exit_code == 0
    assert "engine: not installed" in result.stdout
    assert "not fetched" in result.stdout


def test_path_and_status_follow_the_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(model_app, ["path", "--model", "qwen2.5-coder-1.5b", "--precision", "int4"])
    assert result.exit_code == 1
    assert "chatstack model fetch --model qwen2.5-coder-1.5b --precision int4" in result.stderr
    assert "hf-int4" in result.stderr

    monkeypatch.setenv("CHATSTACK_MODEL_PRECISION", "int4")
    result = runner.invoke(model_app, ["status"])
    assert result.exit_code == 0
    assert "int4 not fetched" in result.stdout


def test_an_unknown_precision_is_a_usage_error() -> None:
    result = runner.invoke(model_app, ["fetch", "--precision", "fp8"])
    assert result.exit_code == 2


def test_fetch_and_path_default_to_the_catalogue_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    # `make engine` runs `chatstack model fetch` with no --precision: it converts the catalogue's choice.
    monkeypatch.delenv("CHATSTACK_MODEL_PRECISION", raising=False)
    result = runner.invoke(model_app, ["path", "--model", "qwen2.5-coder-1.5b"])
    assert result.exit_code == 1
    assert "chatstack model fetch --model qwen2.5-coder-1.5b --precision int8" in result.stderr
    assert "hf-int8" in result.stderr
