"""Preparing what the engine serves: fetch, then convert once in the engine's Python."""

from __future__ import annotations

import json
import stat
import textwrap
from pathlib import Path

import pytest

from backends.local.catalogue import Catalogue, get_model, load_catalogue
from backends.local.model_source import ConversionError, ModelSource, is_converted, prepare_model
from backends.local.weights import ModelCache, PipDownloader
from tests.local.fake_wheels import fake_model

# Stands in for the engine's Python running convert.py: writes the folder and the marker it would.
FAKE_PYTHON = textwrap.dedent(
    """\
    #!/bin/sh
    # $1 is convert.py; then --gguf G --out O --sha256 H --generation-config J
    out="$5"; sha="$7"
    echo "$@" >> "$(dirname "$0")/calls"
    [ -n "$FAIL_CONVERSION" ] && { echo "torch exploded" >&2; exit 1; }
    mkdir -p "$out" && printf '{"gguf_sha256": "%s"}' "$sha" > "$out/chatstack-model.json"
    """
)


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    path = tmp_path / "engine" / "python"
    path.parent.mkdir()
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_catalogue_model_is_fetched_then_converted_once(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = fake_model(tmp_path / "index", [b"GGUF", b"weights"])
    cache = ModelCache(tmp_path / "cache")
    monkeypatch.setattr(
        "backends.local.weights.PipDownloader",
        lambda: PipDownloader(pip_args=("--no-index", "--find-links", str(tmp_path / "index"))),
    )
    source = ModelSource(spec, None, spec.served_name)
    lines: list[str] = []

    folder = prepare_model(source, cache, fake_python, lines.append)

    assert folder == str(cache.hf_dir(spec))
    assert is_converted(spec, cache)
    [call] = (fake_python.parent / "calls").read_text().splitlines()
    assert call.split()[0].endswith("backends/local/convert.py")
    assert f"--sha256 {spec.sha256}" in call
    assert any(line.startswith("converting tiny.gguf") for line in lines)

    assert prepare_model(source, cache, fake_python, lines.append) == folder
    assert len((fake_python.parent / "calls").read_text().splitlines()) == 1


def test_a_failed_conversion_says_why(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = fake_model(tmp_path / "index", [b"GGUF"])
    cache = ModelCache(tmp_path / "cache")
    cache.model_dir(spec).mkdir(parents=True)
    cache.gguf_path(spec).write_bytes(b"GGUF")
    (cache.model_dir(spec) / f"{spec.gguf_file}.verified").write_text(f"{spec.sha256} {spec.size}\n")
    monkeypatch.setenv("FAIL_CONVERSION", "1")

    with pytest.raises(ConversionError, match="torch exploded"):
        prepare_model(ModelSource(spec, None, "x"), cache, fake_python, print)
    assert not is_converted(spec, cache)


def test_a_conversion_of_another_file_does_not_count(tmp_path: Path) -> None:
    spec = get_model()
    cache = ModelCache(tmp_path)
    cache.hf_dir(spec).mkdir(parents=True)
    (cache.hf_dir(spec) / "chatstack-model.json").write_text(json.dumps({"gguf_sha256": "0" * 64}))
    assert not is_converted(spec, cache)


def test_a_folder_or_hub_id_is_served_as_it_is(tmp_path: Path) -> None:
    source = ModelSource(None, "Qwen/Qwen2.5-7B-Instruct", "qwen")
    assert (
        prepare_model(source, ModelCache(tmp_path), tmp_path / "no-python", print)
        == "Qwen/Qwen2.5-7B-Instruct"
    )


def test_the_shipped_catalogue_is_consistent() -> None:
    catalogue = load_catalogue()
    assert catalogue.default in catalogue.models
    for name, spec in catalogue.models.items():
        assert spec.name == name
        assert spec.gguf_file.endswith(".gguf")
        packages = [p.package for p in spec.parts]
        assert packages == [
            f"{packages[0].rsplit('-part', 1)[0]}-part{n}" for n in range(1, len(packages) + 1)
        ]
        assert spec.parts[0].wheel_name(spec.version).endswith(f"-{spec.version}-py3-none-any.whl")
        assert isinstance(spec.generation.get("top_k"), int)


def test_a_catalogue_whose_default_is_missing_is_refused() -> None:
    with pytest.raises(ValueError, match="default model 'nope' is not in the catalogue"):
        Catalogue.model_validate({"default": "nope", "models": {}})
