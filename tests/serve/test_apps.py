"""The production apps without Ray: memory budgets, P/D pairing, the committed config files, the pins."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.local.engine_env import (
    DEFAULT_REQUIREMENTS,
    REQUIREMENTS_FILE,
    SERVE_REQUIREMENTS_FILE,
    requirements_digest,
)
from backends.serve import render
from backends.serve.apps import (
    APPS,
    DEEPSEEK_PD,
    QWEN,
    QWEN_MAX_MODEL_LEN,
    QWEN_SERVERLESS,
    ServeApp,
)
from backends.serve.budget import A10G, DEEPSEEK_V2_LITE, QWEN2_5_7B, BudgetError, EngineShape, compute
from backends.serve.checks import PairingError, check_app, check_memory, check_pd_pair, check_serving_args

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(APPS))
def test_every_shipped_app_fits_its_gpus(name: str) -> None:
    budgets = check_app(APPS[name])
    assert budgets, "every engine of a shipped app has memory facts"
    for budget in budgets:
        assert budget.fits
        assert (
            budget.weights + budget.reserve + budget.shape.max_model_len * budget.kv_per_token
            <= budget.budget
        )


def test_qwen_context_is_derived_from_the_kv_budget() -> None:
    budget = compute(
        QWEN2_5_7B, A10G, EngineShape(max_model_len=QWEN_MAX_MODEL_LEN, max_num_batched_tokens=4096)
    )
    assert QWEN2_5_7B.kv_bytes_per_token == 56 * 1024
    assert round(QWEN2_5_7B.weight_bytes / 1e9, 1) == 15.2
    assert budget.kv_tokens == 75_914  # the arithmetic in apps.QWEN_MAX_MODEL_LEN's docstring
    assert QWEN_MAX_MODEL_LEN == 16_384
    assert budget.full_sequences == 4
    assert budget.kv_tokens // 4 < QWEN_MAX_MODEL_LEN * 2, "the largest power of two that keeps 4 sequences"


def test_deepseek_needs_two_gpus_and_replicates_its_latent_kv() -> None:
    one = compute(DEEPSEEK_V2_LITE, A10G, EngineShape(max_model_len=8192, enforce_eager=True))
    two = compute(
        DEEPSEEK_V2_LITE, A10G, EngineShape(max_model_len=8192, tensor_parallel_size=2, enforce_eager=True)
    )
    assert not one.fits
    assert one.kv_bytes < 0
    assert two.fits
    assert two.kv_per_token == one.kv_per_token == 27 * 576 * 2, "MLA's KV is not split by tensor parallelism"
    grouped = compute(QWEN2_5_7B, A10G, EngineShape(max_model_len=8192, tensor_parallel_size=2))
    assert grouped.kv_per_token == QWEN2_5_7B.kv_bytes_per_token // 2


def _qwen_config() -> dict[str, Any]:
    return copy.deepcopy(dict(QWEN.args["llm_configs"][0]))


def test_an_over_budget_config_is_refused_with_what_to_change() -> None:
    config = _qwen_config()
    config["engine_kwargs"]["max_model_len"] = 32_768
    config["engine_kwargs"]["gpu_memory_utilization"] = 0.75
    with pytest.raises(BudgetError) as refused:
        check_memory(config)
    message = str(refused.value)
    assert message.startswith("qwen2.5-7b-instruct: does not fit")
    assert "one full sequence needs 1.75 GiB of KV cache" in message
    assert re.search(r"lower max_model_len to at most [\d,]+", message)
    most = int(re.search(r"at most ([\d,]+)", message).group(1).replace(",", ""))  # type: ignore[union-attr]
    config["engine_kwargs"]["max_model_len"] = most
    assert check_memory(config) is not None, "the suggested length fits"


def test_weights_alone_over_budget_say_so() -> None:
    config = copy.deepcopy(dict(DEEPSEEK_PD.args["decode_config"]))
    config["engine_kwargs"]["tensor_parallel_size"] = 1
    with pytest.raises(BudgetError, match="the weights and reserve alone exceed the budget"):
        check_memory(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.pop("max_model_len"), "set engine_kwargs.max_model_len"),
        (
            lambda e: e.update(max_model_len=65_536),
            "longer than Qwen/Qwen2.5-7B-Instruct's 32,768-token context",
        ),
        (lambda e: e.update(max_num_batched_tokens=16_384), "set max_num_batched_tokens to at most 4,096"),
    ],
)
def test_configs_the_budget_cannot_vouch_for_are_refused(change: Any, message: str) -> None:
    config = _qwen_config()
    change(config["engine_kwargs"])
    with pytest.raises(BudgetError, match=re.escape(message)):
        check_memory(config)


def test_unknown_models_are_refused_in_ci_and_let_through_on_a_cluster() -> None:
    config = _qwen_config()
    config["model_loading_config"]["model_source"] = "s3://bucket/my-model"
    with pytest.raises(BudgetError, match="no memory facts for model 's3://bucket/my-model'"):
        check_serving_args({"llm_configs": [config]})
    assert check_serving_args({"llm_configs": [config]}, strict=False) == []
    del config["accelerator_type"]
    assert check_memory(config) is None, "not a GPU deployment: nothing to budget"


def _pd() -> tuple[dict[str, Any], dict[str, Any]]:
    args = copy.deepcopy(dict(DEEPSEEK_PD.args))
    return args["prefill_config"], args["decode_config"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, d: d["engine_kwargs"].update(max_model_len=4096), "engine_kwargs.max_model_len differs"),
        (lambda p, d: d["model_loading_config"].update(model_id="other"), "prefill model_id"),
        (lambda p, d: d["engine_kwargs"].pop("kv_transfer_config"), "both prefill and decode need"),
        (
            lambda p, d: d["engine_kwargs"]["kv_transfer_config"].update(kv_connector="LMCacheConnectorV1"),
            "kv_connector differs",
        ),
        (
            lambda p, d: d["runtime_env"]["env_vars"].update(VLLM_NIXL_SIDE_CHANNEL_PORT="20001"),
            "ports overlap",
        ),
        (lambda p, d: p["deployment_config"].update(num_replicas=2), "can run only one replica per node"),
    ],
)
def test_a_prefill_decode_pair_that_cannot_hand_over_is_refused(change: Any, message: str) -> None:
    prefill, decode = _pd()
    check_pd_pair(prefill, decode)
    change(prefill, decode)
    with pytest.raises(PairingError, match=re.escape(message)):
        check_pd_pair(prefill, decode)


def test_the_pd_app_is_the_one_the_issue_describes() -> None:
    prefill, decode = _pd()
    for config in (prefill, decode):
        engine = config["engine_kwargs"]
        assert config["model_loading_config"]["model_source"] == "deepseek-ai/DeepSeek-V2-Lite-Chat"
        assert engine["tensor_parallel_size"] == 2
        assert engine["enforce_eager"] is True
        assert engine["trust_remote_code"] is True
        assert engine["kv_transfer_config"] == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
        env = config["runtime_env"]["env_vars"]
        assert env["UCX_TLS"]
        assert env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "127.0.0.1"
    assert prefill["engine_kwargs"]["kv_transfer_config"] is not decode["engine_kwargs"]["kv_transfer_config"]


def test_serverless_qwen_scales_to_zero_and_differs_from_qwen_only_there() -> None:
    (serverless,) = QWEN_SERVERLESS.args["llm_configs"]
    (always_on,) = QWEN.args["llm_configs"]
    scaling = serverless["deployment_config"]["autoscaling_config"]
    assert scaling["min_replicas"] == 0
    assert scaling["initial_replicas"] == 0
    assert scaling["downscale_delay_s"] >= 60
    assert {k: v for k, v in serverless.items() if k != "deployment_config"} == {
        k: v for k, v in always_on.items() if k != "deployment_config"
    }


@pytest.mark.parametrize("name", list(APPS))
def test_the_committed_config_file_is_what_the_builders_render(name: str) -> None:
    app = APPS[name]
    path = render.config_path(app)
    assert path.read_text() == render.render(app), (
        f"re-render with `python -m backends.serve.render` ({path})"
    )
    config = yaml.safe_load(path.read_text())
    (application,) = config["applications"]
    assert application["name"] == name
    assert application["import_path"] == app.import_path
    assert application["args"] == app.args
    assert config["http_options"]["port"] == app.port


def test_render_check_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.yaml" for name in APPS)
    assert render.main(["--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "qwen.yaml"
    stale.write_text(stale.read_text().replace("max_model_len: 16384", "max_model_len: 32768"))
    assert render.main(["--check", "--out", str(tmp_path), "qwen"]) == 1
    assert "+        max_model_len: 16384" in capsys.readouterr().err


def test_render_refuses_an_app_over_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _qwen_config()
    config["engine_kwargs"]["max_model_len"] = 32_768
    config["engine_kwargs"]["gpu_memory_utilization"] = 0.7
    greedy = ServeApp(
        name="qwen", builder="openai", port=8100, summary="too long", args={"llm_configs": [config]}
    )
    monkeypatch.setitem(render.APPS, "qwen", greedy)
    assert render.main(["--out", str(tmp_path), "qwen"]) == 1
    assert "qwen: refused: qwen2.5-7b-instruct: does not fit" in capsys.readouterr().err
    assert not (tmp_path / "qwen.yaml").exists()


def test_the_backends_file_points_at_these_apps() -> None:
    backends = {
        b["name"]: b for b in yaml.safe_load((ROOT / "backends" / "backends.yaml").read_text())["backends"]
    }
    for backend, apps in {
        "qwen": (QWEN, QWEN_SERVERLESS),
        "deepseek-pd": (DEEPSEEK_PD, APPS["deepseek"]),
    }.items():
        for app in apps:
            (model_id,) = {c["model_loading_config"]["model_id"] for c in app.llm_configs()}
            assert backends[backend]["model"] == model_id
            assert backends[backend]["base_url"] == f"http://127.0.0.1:{app.port}/v1"
            max_len = {c["engine_kwargs"]["max_model_len"] for c in app.llm_configs()}
            assert max_len == {backends[backend]["context_length"]}


def _pins(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    pairs = [line.split("==", 1) for line in lines if line and not line.startswith("#")]
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def test_ray_serve_is_pinned_on_top_of_the_engine_without_touching_its_pins() -> None:
    serve, engine = _pins(SERVE_REQUIREMENTS_FILE), _pins(REQUIREMENTS_FILE)
    assert serve["ray"] == "2.60.0"
    assert {"pyarrow", "pandas"} <= set(serve)
    assert not set(serve) & set(engine), "a package pinned twice would make pip refuse the install"
    assert not {"vllm", "torch", "torchvision", "triton"} & set(serve)


def test_the_engine_stamp_covers_the_ray_serve_pins() -> None:
    assert SERVE_REQUIREMENTS_FILE in DEFAULT_REQUIREMENTS
    assert requirements_digest() != requirements_digest(REQUIREMENTS_FILE)
    assert requirements_digest(REQUIREMENTS_FILE) == requirements_digest([REQUIREMENTS_FILE])
