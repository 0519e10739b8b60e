"""The quantised conversions, for real: a tiny Q4_K GGUF made here, converted by `convert.py` in the
engine's Python to int4 and int8, loaded by vLLM with chatstack's quantised layers, and compared with what the
checkpoint means.

Needs the engine's virtualenv (`chatstack model install-engine`); slow: vLLM takes one to three minutes
to load even a tiny model on two busy cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.local.catalogue import ModelSpec, Precision
from backends.local.convert import QUANTIZATION_CONFIGS
from backends.local.model_source import ModelSource, prepare_model
from backends.local.settings import LocalSettings
from backends.local.weights import ModelCache, sha256_file
from tests.local.fake_wheels import fake_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
ENGINE_PYTHON = LocalSettings(_env_file=None).resolved_engine_python()  # type: ignore[call-arg]


def engine_run(*args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(ENGINE_PYTHON), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def cached_gguf(tmp_path: Path, gguf: Path, name: str, **changes: object) -> tuple[ModelSpec, ModelCache]:
    """A catalogue entry for `gguf`, with the file already fetched and verified in a cache of its own."""
    data = gguf.read_bytes()
    spec = fake_model(tmp_path / f"index-{name}", [data]).model_copy(update=changes)
    cache = ModelCache(tmp_path / f"cache-{name}")
    cache.model_dir(spec).mkdir(parents=True)
    cache.gguf_path(spec).write_bytes(data)
    (cache.model_dir(spec) / f"{spec.gguf_file}.verified").write_text(f"{spec.sha256} {spec.size}\n")
    return spec, cache


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    engine_run(str(HERE / "tiny_gguf.py"), str(path))
    return path


@dataclass(frozen=True)
class Expected:
    quantization_config: dict[str, object]
    kernel: str
    """What vLLM logs when it picks the kernel for these layers."""
    error: tuple[float, float]
    """Bounds on the mean relative error per layer against the GGUF's own weights."""
    logprob_tolerance: float
    """Largest difference allowed between vLLM's log-probabilities and the checkpoint's meaning."""
    layers: int
    """Linear layers quantised: the two decoder layers' 14, plus the output layer for int8."""


EXPECTED = {
    # Each group of 32 is fitted again with an integer zero point: never exact, but close.
    "int4": Expected(QUANTIZATION_CONFIGS["int4"], "quantization=chatstack_int4", (0.001, 0.05), 0.05, 14),
    # Weight-only: the activations stay bf16, as in the reference, so the margin is bf16 arithmetic's.
    "int8": Expected(
        QUANTIZATION_CONFIGS["int8"] | {"lm_head": True},
        "quantization=chatstack_int8",
        (1e-4, 0.02),
        0.05,
        15,
    ),
}


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_a_quantised_conversion_is_deterministic_pinned_and_runs_on_vllms_cpu_kernel(
    precision: Precision, tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = EXPECTED[precision]
    spec, cache = cached_gguf(tmp_path, tiny_gguf, "first")
    quantised = Path(prepare_model(ModelSource(spec, None, "tiny", precision), cache, ENGINE_PYTHON, print))
    bf16 = Path(prepare_model(ModelSource(spec, None, "tiny", "bf16"), cache, ENGINE_PYTHON, print))

    assert quantised == cache.model_dir(spec) / f"hf-{precision}"
    marker = json.loads((quantised / "chatstack-model.json").read_text())
    assert marker["precision"] == precision
    assert marker["weights_sha256"] == sha256_file(quantised / "model.safetensors")
    config = json.loads((quantised / "config.json").read_text())
    assert config["quantization_config"] == expected.quantization_config
    summary = marker[precision]
    assert summary["layers"] == expected.layers
    low, high = expected.error
    assert low < summary["relative_error_mean"] <= summary["relative_error_max"] < high

    # The same GGUF converted again elsewhere, with other thread counts, must give the very same bytes:
    # the catalogue pins them, and a conversion that differs is refused.
    again, again_cache = cached_gguf(
        tmp_path, tiny_gguf, "again", converted_sha256={precision: marker["weights_sha256"]}
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    prepare_model(
        ModelSource(again, None, "tiny", precision), again_cache, ENGINE_PYTHON, print
    )  # raises IntegrityError on any difference
    monkeypatch.delenv("OMP_NUM_THREADS")  # for the conversion only: vLLM's teardown aborts with one thread

    result = engine_run(str(HERE / "quantised_reference.py"), str(quantised), str(bf16), timeout=1200)
    output = result.stdout + result.stderr
    assert expected.kernel in output, output[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    logprobs = json.loads(line.removeprefix("RESULT "))
    # vLLM's kernel computes what the checkpoint means (up to bfloat16 arithmetic): a wrong nibble
    # order, zero point or scale layout would be off by whole nats.
    worst = max(abs(a - b) for a, b in zip(logprobs["vllm"], logprobs["reference"], strict=True))
    assert worst < expected.logprob_tolerance, logprobs
