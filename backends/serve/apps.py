"""The production apps as plain data: each one is a Ray Serve application whose builder args are exactly
`ray.serve.llm`'s (`LLMServingArgs` for `build_openai_app`, `PDServingArgs` for `build_pd_openai_app`).

| app               | model                  | GPUs (A10G)           | port | chatstack backend  |
|-------------------|------------------------|-----------------------|------|--------------------|
| `qwen`            | Qwen2.5-7B-Instruct    | 1 per replica, 1-4    | 8100 | `qwen`             |
| `qwen-serverless` | the same               | 0-2 (scale to zero)   | 8100 | `qwen`             |
| `deepseek-pd`     | DeepSeek-V2-Lite-Chat  | 2 prefill + 2 decode  | 8200 | `deepseek-pd`      |
| `deepseek`        | the same, no P/D       | 2 per replica, 1-2    | 8200 | `deepseek-pd`      |

Each pair serves the same model name on the same port, so chatstack's `backends.yaml` needs no change
whichever of the two runs; they are alternatives for the same machines, not meant to run together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from backends.serve.budget import A10G, DEEPSEEK_V2_LITE, QWEN2_5_7B, EngineShape, derive_max_model_len

Builder = Literal["openai", "pd"]
IMPORT_PATHS: Mapping[Builder, str] = {
    "openai": "backends.serve.builders:build_openai_app",
    "pd": "backends.serve.builders:build_pd_openai_app",
}

GPU_MEMORY_UTILIZATION = 0.90
MAX_NUM_BATCHED_TOKENS = 4096
"""Chunked-prefill step size: bounds the activation reserve (budget.Reserve) and each step's latency."""
MAX_NUM_SEQS = 64

QWEN_MODEL_ID = "qwen2.5-7b-instruct"
DEEPSEEK_MODEL_ID = "deepseek-v2-lite-chat"
"""The served model names: what chatstack's backends.yaml sends as `model`."""

QWEN_FULL_SEQUENCES = 4
QWEN_MAX_MODEL_LEN = derive_max_model_len(
    QWEN2_5_7B,
    A10G,
    EngineShape(
        max_model_len=1,
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        max_num_batched_tokens=MAX_NUM_BATCHED_TOKENS,
    ),
    full_sequences=QWEN_FULL_SEQUENCES,
)
"""Qwen2.5-7B-Instruct's context on one A10G, derived from the KV budget (budget.py has the inputs):

    budget   = 0.90 x 23,028 MiB (24,146,608,128 B)             = 21,731,947,315 B  (20.24 GiB)
    weights  = 7,615,616,512 params x 2 B (bf16)                 = 15,231,233,024 B  (14.19 GiB)
    reserve  = 1 GiB activations + 0.5 GiB runtime + 0.5 GiB CUDA graphs = 2,147,483,648 B
    KV       = 21,731,947,315 - 15,231,233,024 - 2,147,483,648  =  4,353,230,643 B  (4.05 GiB)
    KV/token = 28 layers x 4 KV heads x 128 x (K, V) x 2 B       =         57,344 B  (56 KiB)
    capacity = 4,353,230,643 / 57,344                            =         75,914 tokens
    max_model_len = largest power of two <= min(32,768, 75,914 / 4) = 16,384

Four full-length sequences fit at once (and many more of the seeds' ShareGPT length); 32,768 would
leave room for only two, so a couple of long conversations would queue everyone else.
"""

DEEPSEEK_MAX_MODEL_LEN = 8192
"""Set explicitly: the checkpoint's config says 163,840 positions, more than the ~107k tokens of KV an
A10G pair holds, so vLLM would refuse to start without it. 8,192 keeps 13 full sequences in the cache
(budget.py) and bounds the KV cache one P/D request moves from prefill to decode (8,192 x 31,104 B =
255 MB at most); chatstack's backends.yaml says `context_length: 8192` for it."""

UCX_TLS = "cuda_ipc,cuda_copy,tcp"
"""UCX transports for NIXL on one node without RDMA: cuda_ipc (GPU to GPU), cuda_copy (staging) and tcp
(control; data only where cuda_ipc cannot serve, see docs/ray-serve.md about the pull connector)."""
NIXL_HOST = "127.0.0.1"
"""Prefill and decode share one node: the NIXL side channel (unauthenticated) stays on loopback."""
PREFILL_NIXL_PORT = 20000
DECODE_NIXL_PORT = 22000
"""Pinned side-channel ports; each engine uses port + tensor-parallel rank (20000-20001, 22000-22001)."""


@dataclass(frozen=True, slots=True)
class ServeApp:
    """One Ray Serve application: its name, the builder its config file imports, and the builder's args."""

    name: str
    builder: Builder
    port: int
    """Ray Serve's HTTP port in the rendered config (one Ray cluster serves one port)."""
    summary: str
    args: Mapping[str, Any]

    @property
    def import_path(self) -> str:
        return IMPORT_PATHS[self.builder]

    def llm_configs(self) -> list[Mapping[str, Any]]:
        """The `LLMConfig`s in the args (prefill first for P/D)."""
        if self.builder == "pd":
            return [self.args["prefill_config"], self.args["decode_config"]]
        return list(self.args["llm_configs"])


def _qwen_config(autoscaling: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_loading_config": {"model_id": QWEN_MODEL_ID, "model_source": QWEN2_5_7B.source},
        "accelerator_type": A10G.name,
        "engine_kwargs": {
            "dtype": "bfloat16",
            "max_model_len": QWEN_MAX_MODEL_LEN,
            "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
            "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
            "max_num_seqs": MAX_NUM_SEQS,
            "enable_prefix_caching": True,
            "enable_auto_tool_choice": True,
            "tool_call_parser": "hermes",
        },
        "deployment_config": {
            "max_ongoing_requests": MAX_NUM_SEQS,
            "autoscaling_config": dict(autoscaling),
        },
    }


def _deepseek_engine(tensor_parallel_size: int) -> dict[str, Any]:
    return {
        "dtype": "bfloat16",
        "tensor_parallel_size": tensor_parallel_size,
        "max_model_len": DEEPSEEK_MAX_MODEL_LEN,
        "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
        "max_num_batched_tokens": MAX_NUM_BATCHED_TOKENS,
        "max_num_seqs": MAX_NUM_SEQS,
        "enforce_eager": True,
        "trust_remote_code": True,
    }


def _deepseek_config(
    *,
    deployment: Mapping[str, Any],
    extra_engine: Mapping[str, Any] | None = None,
    nixl_port: int | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": DEEPSEEK_MODEL_ID, "model_source": DEEPSEEK_V2_LITE.source},
        "accelerator_type": A10G.name,
        "engine_kwargs": {**_deepseek_engine(2), **(extra_engine or {})},
        "deployment_config": dict(deployment),
    }
    if nixl_port is not None:
        config["runtime_env"] = {
            "env_vars": {
                "UCX_TLS": UCX_TLS,
                "VLLM_NIXL_SIDE_CHANNEL_HOST": NIXL_HOST,
                "VLLM_NIXL_SIDE_CHANNEL_PORT": str(nixl_port),
            }
        }
    return config


def _nixl_kv_transfer() -> dict[str, Any]:
    # A fresh dict per engine: Ray's NIXL backend writes the engine's id into it.
    return {"kv_connector": "NixlConnector", "kv_role": "kv_both"}


QWEN = ServeApp(
    name="qwen",
    builder="openai",
    port=8100,
    summary="Qwen2.5-7B-Instruct, one A10G per replica, native tool calls (hermes), 1-4 replicas",
    args={
        "llm_configs": [
            _qwen_config(
                {
                    "min_replicas": 1,
                    "max_replicas": 4,
                    # Each replica batches up to 64 sequences; scale out before it queues.
                    "target_ongoing_requests": 16,
                    "upscale_delay_s": 30,
                    "downscale_delay_s": 600,
                }
            )
        ]
    },
)

QWEN_SERVERLESS = ServeApp(
    name="qwen-serverless",
    builder="openai",
    port=8100,
    summary="qwen that scales to zero replicas when idle (bursty traffic; the first request waits)",
    args={
        "llm_configs": [
            _qwen_config(
                {
                    "min_replicas": 0,
                    "initial_replicas": 0,
                    "max_replicas": 2,
                    "target_ongoing_requests": 16,
                    "upscale_delay_s": 0,
                    # A cold start (weights from the node's disk cache, CUDA graphs) takes 1-2 minutes on
                    # an A10G: idle for 5 minutes before giving the GPU back, so a pause in a
                    # conversation does not pay for one.
                    "downscale_delay_s": 300,
                }
            )
        ]
    },
)

DEEPSEEK_PD = ServeApp(
    name="deepseek-pd",
    builder="pd",
    port=8200,
    summary="DeepSeek-V2-Lite-Chat, prefill (TP 2) and decode (TP 2) on one 4 x A10G node, KV over NIXL",
    args={
        # One node holds exactly one prefill and one decode replica; the pinned NIXL ports need that too.
        "prefill_config": _deepseek_config(
            deployment={"num_replicas": 1},
            extra_engine={"kv_transfer_config": _nixl_kv_transfer()},
            nixl_port=PREFILL_NIXL_PORT,
        ),
        "decode_config": _deepseek_config(
            deployment={"num_replicas": 1},
            extra_engine={"kv_transfer_config": _nixl_kv_transfer()},
            nixl_port=DECODE_NIXL_PORT,
        ),
    },
)

DEEPSEEK = ServeApp(
    name="deepseek",
    builder="openai",
    port=8200,
    summary="DeepSeek-V2-Lite-Chat without disaggregation, TP 2 per replica, 1-2 replicas per 4-GPU node",
    args={
        "llm_configs": [
            _deepseek_config(
                deployment={
                    "max_ongoing_requests": MAX_NUM_SEQS,
                    "autoscaling_config": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "target_ongoing_requests": 16,
                        "upscale_delay_s": 30,
                        "downscale_delay_s": 600,
                    },
                }
            )
        ]
    },
)

APPS: Mapping[str, ServeApp] = {app.name: app for app in (QWEN, QWEN_SERVERLESS, DEEPSEEK_PD, DEEPSEEK)}


LOCAL_APP_NAME = "local"
LOCAL_CPU_RAY_CPUS = 4
"""Logical CPUs the local Ray cluster offers (`ray.init(num_cpus=...)`): the engine's placement-group
bundle, the model server and the ingress each ask for one; they are scheduling tokens, not cores (vLLM
binds its threads to the cores in `VLLM_CPU_OMP_THREADS_BIND`)."""


def local_cpu_app(
    *,
    model_id: str,
    model_source: str,
    port: int,
    max_model_len: int,
    tool_call_parser: str,
    env_vars: Mapping[str, str],
    engine_kwargs: Mapping[str, Any] | None = None,
) -> ServeApp:
    """The embedded model (the `local` backend) as a Ray Serve app on this machine's CPU: the same
    `build_openai_app` and `LLMConfig` shape as the GPU apps, with `accelerator_config: {kind: cpu}`
    instead of an `accelerator_type`.

    Built at start by `backends.serve.local` (`chatstack serve --engine ray`) from the same settings as
    the plain vLLM engine, because the model folder, the cores and the port are this machine's; so no
    config file is committed for it. `env_vars` are vLLM's CPU settings (thread binding, KV cache space),
    which reach the model server and its engine workers through the runtime env.
    """
    engine: dict[str, Any] = {
        "dtype": "bfloat16",
        "max_model_len": max_model_len,
        "enable_auto_tool_choice": True,
        # Registered through the `vllm.general_plugins` entry point (`install-engine` makes it visible).
        "tool_call_parser": tool_call_parser,
        **(engine_kwargs or {}),
    }
    return ServeApp(
        name=LOCAL_APP_NAME,
        builder="openai",
        port=port,
        summary="the embedded model on this machine's CPU (vLLM CPU build), one replica",
        args={
            "llm_configs": [
                {
                    "model_loading_config": {"model_id": model_id, "model_source": model_source},
                    "accelerator_config": {"kind": "cpu"},
                    "engine_kwargs": engine,
                    "runtime_env": {"env_vars": dict(env_vars)},
                    "deployment_config": {"num_replicas": 1, "max_ongoing_requests": MAX_NUM_SEQS},
                }
            ],
            # One router replica is plenty on a laptop (Ray's default is two per model replica).
            "ingress_deployment_config": {"num_replicas": 1},
        },
    )
