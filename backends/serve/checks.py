"""What a Ray Serve LLM app must satisfy before it is rendered or deployed, checked on its builder args as
plain data (`LLMConfig`s as dicts), so the same code runs in CI, in `render`, and in the builders on the
cluster: the GPU memory budget of every engine, and that a prefill/decode pair can hand KV over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.serve.apps import ServeApp
from backends.serve.budget import GPUS, MODELS, Budget, BudgetError, EngineShape, check

LLMConfigData = Mapping[str, Any]


class PairingError(ValueError):
    """A prefill/decode pair that cannot work together."""


def engine_shape(config: LLMConfigData) -> EngineShape:
    """The budget-relevant engine settings of one `LLMConfig` (vLLM's defaults where unset)."""
    engine = config.get("engine_kwargs") or {}
    if "max_model_len" not in engine:
        raise BudgetError(
            f"{_name(config)}: set engine_kwargs.max_model_len: without it vLLM takes the checkpoint's "
            f"context length, which may not fit the KV cache"
        )
    batched = engine.get("max_num_batched_tokens")
    return EngineShape(
        max_model_len=int(engine["max_model_len"]),
        gpu_memory_utilization=float(engine.get("gpu_memory_utilization", 0.9)),
        tensor_parallel_size=int(engine.get("tensor_parallel_size", 1)),
        pipeline_parallel_size=int(engine.get("pipeline_parallel_size", 1)),
        enforce_eager=bool(engine.get("enforce_eager", False)),
        max_num_batched_tokens=None if batched is None else int(batched),
    )


def check_memory(config: LLMConfigData, *, strict: bool = True) -> Budget | None:
    """The memory budget of one `LLMConfig`, or `BudgetError` if it does not fit.

    Not a GPU deployment (no `accelerator_type`): None. A model or GPU without memory facts in
    `budget.py`: `BudgetError` when `strict`, else None (the builders on a cluster let it through).
    """
    accelerator = config.get("accelerator_type")
    if accelerator is None:
        return None
    loading = config.get("model_loading_config") or {}
    source = loading.get("model_source") or loading.get("model_id")
    model, gpu = MODELS.get(str(source)), GPUS.get(str(accelerator))
    if model is None or gpu is None:
        if not strict:
            return None
        missing = f"model {source!r}" if model is None else f"GPU {accelerator!r}"
        raise BudgetError(
            f"{_name(config)}: no memory facts for {missing}: add them to backends/serve/budget.py"
        )
    return check(model, gpu, engine_shape(config), name=_name(config))


_MUST_MATCH = ("max_model_len", "dtype", "kv_cache_dtype", "block_size", "trust_remote_code")


def check_pd_pair(prefill: LLMConfigData, decode: LLMConfigData) -> None:
    """`PairingError` unless prefill and decode can hand KV over: the same model, the same KV layout, one
    KV connector on both, and pinned NIXL side-channel ports that cannot collide."""
    names = [_model_source(prefill), _model_source(decode)]
    if names[0] != names[1]:
        raise PairingError(f"prefill serves {names[0]} but decode serves {names[1]}")
    if _model_id(prefill) != _model_id(decode):
        raise PairingError(f"prefill model_id {_model_id(prefill)!r} != decode {_model_id(decode)!r}")
    p_engine, d_engine = prefill.get("engine_kwargs") or {}, decode.get("engine_kwargs") or {}
    for key in _MUST_MATCH:
        if p_engine.get(key) != d_engine.get(key):
            raise PairingError(
                f"engine_kwargs.{key} differs: prefill {p_engine.get(key)!r}, decode {d_engine.get(key)!r} "
                f"(decode continues the KV cache prefill wrote, so both must lay it out the same)"
            )
    p_kv, d_kv = p_engine.get("kv_transfer_config"), d_engine.get("kv_transfer_config")
    if not p_kv or not d_kv:
        raise PairingError("both prefill and decode need engine_kwargs.kv_transfer_config")
    if p_kv.get("kv_connector") != d_kv.get("kv_connector"):
        raise PairingError(
            f"kv_connector differs: prefill {p_kv.get('kv_connector')!r}, decode {d_kv.get('kv_connector')!r}"
        )
    if (p_kv.get("kv_role"), d_kv.get("kv_role")) not in {
        ("kv_both", "kv_both"),
        ("kv_producer", "kv_consumer"),
    }:
        raise PairingError(
            f"kv_role prefill {p_kv.get('kv_role')!r} / decode {d_kv.get('kv_role')!r}: use kv_both on both"
        )
    ports = [_pinned_port(prefill), _pinned_port(decode)]
    for config, port in zip((prefill, decode), ports, strict=True):
        if port is not None and _max_replicas(config) != 1:
            raise PairingError(
                f"{_name(config)}: VLLM_NIXL_SIDE_CHANNEL_PORT is pinned, so it can run only one replica "
                f"per node (replicas would bind the same ports); set num_replicas: 1, or unpin the port "
                f"and let Ray Serve give each replica its own"
            )
    if ports[0] is not None and ports[1] is not None:
        p_range = range(ports[0], ports[0] + _devices(prefill))
        d_range = range(ports[1], ports[1] + _devices(decode))
        if set(p_range) & set(d_range):
            raise PairingError(
                f"NIXL side-channel ports overlap: prefill uses {p_range.start}-{p_range.stop - 1}, decode "
                f"{d_range.start}-{d_range.stop - 1} (one port per tensor-parallel rank)"
            )


def check_serving_args(args: Mapping[str, Any], *, strict: bool = True) -> list[Budget]:
    """Every check for `build_openai_app` args (`llm_configs`); returns the budgets that were checked."""
    configs = args.get("llm_configs")
    if not isinstance(configs, list) or not configs:
        raise BudgetError("llm_configs must be a non-empty list of LLMConfigs")
    budgets = [check_memory(_as_mapping(c), strict=strict) for c in configs]
    return [b for b in budgets if b is not None]


def check_pd_args(args: Mapping[str, Any], *, strict: bool = True) -> list[Budget]:
    """Every check for `build_pd_openai_app` args (`prefill_config`, `decode_config`)."""
    prefill, decode = _as_mapping(args.get("prefill_config")), _as_mapping(args.get("decode_config"))
    check_pd_pair(prefill, decode)
    budgets = [check_memory(prefill, strict=strict), check_memory(decode, strict=strict)]
    return [b for b in budgets if b is not None]


def _as_mapping(config: Any) -> LLMConfigData:
    if not isinstance(config, Mapping):
        raise BudgetError(
            f"expected an LLMConfig as a mapping (a file path or object cannot be checked), got {config!r}"
        )
    return config


def _model_id(config: LLMConfigData) -> str:
    return str((config.get("model_loading_config") or {}).get("model_id"))


def _model_source(config: LLMConfigData) -> str:
    loading = config.get("model_loading_config") or {}
    return str(loading.get("model_source") or loading.get("model_id"))


def _name(config: LLMConfigData) -> str:
    return _model_id(config)


def _devices(config: LLMConfigData) -> int:
    engine = config.get("engine_kwargs") or {}
    return int(engine.get("tensor_parallel_size", 1)) * int(engine.get("pipeline_parallel_size", 1))


def _pinned_port(config: LLMConfigData) -> int | None:
    env = ((config.get("runtime_env") or {}).get("env_vars")) or {}
    port = env.get("VLLM_NIXL_SIDE_CHANNEL_PORT")
    return None if port is None else int(port)


def _max_replicas(config: LLMConfigData) -> int:
    deployment = config.get("deployment_config") or {}
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return int(autoscaling.get("max_replicas", 1))
    return int(deployment.get("num_replicas", 1))


def check_app(app: ServeApp, *, strict: bool = True) -> list[Budget]:
    """Every check for one app; returns the budgets of its engines (prefill first for P/D)."""
    if app.builder == "pd":
        return check_pd_args(app.args, strict=strict)
    return check_serving_args(app.args, strict=strict)
