"""Preparing what the engine serves: fetch, then convert once in the engine's Python."""

from __future__ import annotations

import json
import stat
import textwrap
from pathlib import Path

import pytest

from backends.local.catalogue import Catalogue, ModelSpec, get_model, load_catalogue
from backends.local.convert import FORMAT
from backends.local.model_source import (
    ConversionError,
    ModelSource,
    is_converted,
    prepare_model,
    resolve_model,
)
from backends.local.weights import IntegrityError, ModelCache, PipDownloader
from tests.local.fake_wheels import fake_model, sha256

# Stands in for the engine's Python running convert.py: writes the folder and the marker it would.
FAKE_PYTHON = textwrap.dedent(
    """\
    #!/bin/sh
    # $1 is convert.py; then --gguf G --out O --sha256 H --generation-config J --precision P
    out="$5"; sha="$7"; precision="${11}"
    echo "$@" >> "$(dirname "$0")/calls"
    [ -n "$FAIL_CONVERSION" ] && { echo "torch exploded" >&2; exit 1; }
    mkdir -p "$out" && printf 'weights-%s' "$precision" > "$out/model.safetensors"
    digest=$(sha256sum "$out/model.safetensors" | cut -c1-64)
    printf '{"gguf_sha256": "%s", "precision": "%s", "format": FORMAT, "weights_sha256": "%s"}' \\
        "$sha" "$precision" "$digest" > "$out/chatstack-model.json"
    """
).replace("FORMAT", str(FORMAT))


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


def fetched(tmp_path: Path, **changes: object) -> tuple[ModelSpec, ModelCache]:
    """A catalogue entry whose GGUF file is already in the cache, verified (so only conversion is left)."""
    spec = fake_model(tmp_path / "index", [b"GGUF"]).model_copy(update=changes)
    cache = ModelCache(tmp_path / "cache")
    cache.model_dir(spec).mkdir(parents=True)
    cache.gguf_path(spec).write_bytes(b"GGUF")
    (cache.model_dir(spec) / f"{spec.gguf_file}.verified").write_text(f"{spec.sha256} {spec.size}\n")
    return spec, cache


def test_int4_is_converted_into_its_own_folder_and_checked_against_its_pinned_hash(
    tmp_path: Path, fake_python: Path
) -> None:
    spec, cache = fetched(tmp_path, converted_sha256={"int4": sha256(b"weights-int4")})

    folder = prepare_model(ModelSource(spec, None, "x", "int4"), cache, fake_python, print)

    assert folder == str(cache.model_dir(spec) / "hf-int4")
    [call] = (fake_python.parent / "calls").read_text().splitlines()
    assert call.endswith("--precision int4")
    assert is_converted(spec, cache, "int4")
    assert not is_converted(spec, cache, "bf16"), "bf16 has a folder of its own"
    assert prepare_model(ModelSource(spec, None, "x", "bf16"), cache, fake_python, print) == str(
        cache.model_dir(spec) / "hf"
    )
    assert is_converted(spec, cache, "bf16")
    assert is_converted(spec, cache, "int4")


def test_an_int4_conversion_that_does_not_match_its_pin_is_deleted_and_refused(
    tmp_path: Path, fake_python: Path
) -> None:
    spec, cache = fetched(tmp_path, converted_sha256={"int4": "0" * 64})

    with pytest.raises(IntegrityError, match="CHATSTACK_MODEL_PRECISION=bf16") as caught:
        prepare_model(ModelSource(spec, None, "x", "int4"), cache, fake_python, print)

    assert sha256(b"weights-int4") in str(caught.value)
    assert not cache.hf_dir(spec, "int4").exists()
    assert not is_converted(spec, cache, "int4")


def test_an_int4_folder_of_an_older_format_is_converted_again(tmp_path: Path) -> None:
    spec, cache = fetched(tmp_path)
    folder = cache.hf_dir(spec, "int4")
    folder.mkdir(parents=True)
    marker = {"gguf_sha256": spec.sha256, "precision": "int4", "format": FORMAT - 1}
    (folder / "chatstack-model.json").write_text(json.dumps(marker))
    assert not is_converted(spec, cache, "int4")
    (folder / "chatstack-model.json").write_text(json.dumps({**marker, "format": FORMAT}))
    assert is_converted(spec, cache, "int4")
    # A bf16 marker (older conversions have no precision) never counts as int4, nor the other way round.
    (folder / "chatstack-model.json").write_text(json.dumps({"gguf_sha256": spec.sha256}))
    assert not is_converted(spec, cache, "int4")


def test_the_precision_is_the_setting_else_the_catalogue_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    default = get_model()
    assert resolve_model(default.name).precision == default.precision
    assert resolve_model(default.name, precision="int4").precision == "int4"
    catalogue = Catalogue(
        default="small", models={"small": default.model_copy(update={"name": "small", "precision": "int4"})}
    )
    monkeypatch.setattr("backends.local.model_source.load_catalogue", lambda: catalogue)
    assert resolve_model("").precision == "int4"
    assert resolve_model("small", precision="bf16").precision == "bf16"


def test_the_shipped_catalogue_serves_the_measured_precisions() -> None:
    # The default precision is a decision made on measurements (docs/embedded-model.md: int8 answered the
    # agent task set as well as bf16, faster and in less memory), not a default that slips in: changing
    # it must change this test too. The 0.5B was not measured in int8.
    precisions = {name: spec.precision for name, spec in load_catalogue().models.items()}
    assert precisions == {"qwen2.5-coder-0.5b": "bf16", "qwen2.5-coder-1.5b": "int8"}
    # A quantised default is pinned, so a fresh machine converts exactly what was measured.
    assert get_model().precision in get_model().converted_sha256
