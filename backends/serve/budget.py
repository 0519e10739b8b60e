"""GPU memory budget of one vLLM engine: do the weights, the KV cache of at least one full sequence and
the runtime reserve fit in the share of each GPU that vLLM may use? Pure Python, no Ray or vLLM.

vLLM claims `gpu_memory_utilization x total memory` on every GPU it runs on, loads its shard of the
weights, runs one profiling forward pass at `max_num_batched_tokens` (activations), captures CUDA graphs
(not with `enforce_eager`), and gives what is left to the KV cache; it refuses to start when that holds
less than one `max_model_len` sequence. The same arithmetic, per GPU:

    budget      = gpu_memory_utilization x GPU memory
    weights     = weight bytes / (tensor_parallel_size x pipeline_parallel_size)
    reserve     = activations + runtime (CUDA context, cuBLAS/NCCL workspaces)
                  + CUDA graphs (0 with enforce_eager)
    KV / token  = KV bytes per token / pipeline_parallel_size, and / tensor_parallel_size only when the
                  KV heads are split across GPUs (grouped-query attention); MLA's latent KV is replicated
                  on every tensor-parallel rank
    KV capacity = (budget - weights - reserve) / (KV / token)       [tokens]
    fits       <=> KV capacity >= max_model_len

so a config that cannot start is refused here (in CI, by `render`, and by the builders at deploy time)
instead of on the GPU after minutes of loading weights. The inputs are documented estimates, not
measurements: replace them with what vLLM logs on the real GPUs ("Model loading took", "Available KV
cache memory") when you have them.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


class BudgetError(ValueError):
    """A deployment's engine settings do not fit its GPUs (or cannot be checked)."""


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    """Ray's `accelerator_type` name."""
    memory_bytes: int
    """Total memory as CUDA reports it (what `gpu_memory_utilization` is a fraction of)."""


A10G = Gpu("A10G", 23028 * MiB)
"""The 24 GB A10G (AWS g5): nvidia-smi and CUDA report 23,028 MiB (24.15 GB, 22.49 GiB) with ECC on."""

GPUS = {gpu.name: gpu for gpu in (A10G,)}


@dataclass(frozen=True, slots=True)
class Reserve:
    """Memory per GPU that is neither weights nor KV cache (estimates for the settings noted)."""

    activations: int
    """Peak of the profiling forward pass at `max_num_batched_tokens` (and the sampler's logits)."""
    runtime: int
    """CUDA context, cuBLAS and NCCL workspaces, allocator slack: memory outside PyTorch's tensors."""
    cuda_graphs: int
    """CUDA graph capture; not spent with `enforce_eager`."""
    max_num_batched_tokens: int
    """The activation estimate holds up to this many batched tokens; larger needs a new estimate."""

    def total(self, *, enforce_eager: bool) -> int:
        return self.activations + self.runtime + (0 if enforce_eager else self.cuda_graphs)


@dataclass(frozen=True, slots=True)
class ModelMemory:
    """What a model costs in GPU memory, from its published checkpoint and config."""

    source: str
    """The Hugging Face id (`model_source`)."""
    weight_bytes: int
    """bf16 weights, whole model."""
    kv_bytes_per_token: int
    """KV cache per token, all layers, bf16."""
    kv_split_across_tp: bool
    """Whether tensor parallelism splits the KV cache (KV heads) or replicates it (MLA's latent)."""
    context_limit: int
    """The longest context the model was trained for."""
    reserve: Reserve


QWEN2_5_7B = ModelMemory(
    source="Qwen/Qwen2.5-7B-Instruct",
    # 7,615,616,512 parameters x 2 bytes (bf16): 15.2 GB (14.2 GiB).
    weight_bytes=7_615_616_512 * 2,
    # 28 layers x 4 KV heads x 128 dims x (K + V) x 2 bytes = 57,344 bytes = 56 KiB.
    kv_bytes_per_token=28 * 4 * 128 * 2 * 2,
    kv_split_across_tp=True,
    context_limit=32_768,
    reserve=Reserve(
        activations=1 * GiB,  # 4,096 batched tokens (MLP 2 x 18,944 wide) + logits of 64 seqs x 152k vocab
        runtime=512 * MiB,
        cuda_graphs=512 * MiB,
        max_num_batched_tokens=4096,
    ),
)

DEEPSEEK_V2_LITE = ModelMemory(
    source="deepseek-ai/DeepSeek-V2-Lite-Chat",
    # 15.7 B parameters (MoE: 64 routed + 2 shared experts, 2.4 B active) x 2 bytes: 31.4 GB, so at
    # least two 24 GB GPUs.
    weight_bytes=15_700_000_000 * 2,
    # MLA caches one latent per token and layer: 27 layers x (512 kv_lora_rank + 64 rope dims) x 2 bytes
    # = 31,104 bytes (30.4 KiB), the same on every tensor-parallel rank.
    kv_bytes_per_token=27 * (512 + 64) * 2,
    kv_split_across_tp=False,
    context_limit=32_768,
    reserve=Reserve(
        activations=3 * GiB // 2,  # 4,096 batched tokens through the fused-MoE kernels, 102k vocab logits
        runtime=1 * GiB,  # plus NCCL for tensor parallelism and NIXL/UCX registration
        cuda_graphs=512 * MiB,
        max_num_batched_tokens=4096,
    ),
)

MODELS = {model.source: model for model in (QWEN2_5_7B, DEEPSEEK_V2_LITE)}


@dataclass(frozen=True, slots=True)
class EngineShape:
    """The engine settings the budget depends on (a subset of vLLM's engine arguments)."""

    max_model_len: int
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    max_num_batched_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """The arithmetic for one engine on one of its GPUs (bytes unless said otherwise)."""

    model: ModelMemory
    gpu: Gpu
    shape: EngineShape
    budget: int
    weights: int
    reserve: int
    kv_per_token: int

    @property
    def kv_bytes(self) -> int:
        return self.budget - self.weights - self.reserve

    @property
    def kv_tokens(self) -> int:
        """How many tokens of KV cache fit (0 when weights and reserve already exceed the budget)."""
        return max(self.kv_bytes, 0) // self.kv_per_token

    @property
    def full_sequences(self) -> int:
        """How many `max_model_len` sequences the KV cache holds at once."""
        return self.kv_tokens // self.shape.max_model_len

    @property
    def fits(self) -> bool:
        return self.full_sequences >= 1

    def explain(self) -> str:
        s = self.shape
        parallel = s.tensor_parallel_size * s.pipeline_parallel_size
        return (
            f"{self.model.source} on {parallel} x {self.gpu.name}, per GPU: "
            f"{s.gpu_memory_utilization:.2f} x {_gib(self.gpu.memory_bytes)} = {_gib(self.budget)}; "
            f"weights {_gib(self.weights)} + reserve {_gib(self.reserve)} leave {_gib(self.kv_bytes)} "
            f"for KV = {self.kv_tokens:,} tokens at {self.kv_per_token:,} B/token "
            f"= {self.full_sequences} x max_model_len {s.max_model_len:,}"
        )


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def compute(model: ModelMemory, gpu: Gpu, shape: EngineShape) -> Budget:
    """The per-GPU budget of `model` on `gpu` with `shape` (see the module docstring)."""
    tp, pp = shape.tensor_parallel_size, shape.pipeline_parallel_size
    if tp < 1 or pp < 1 or not 0 < shape.gpu_memory_utilization <= 1:
        raise BudgetError(
            f"tensor_parallel_size {tp}, pipeline_parallel_size {pp} and gpu_memory_utilization "
            f"{shape.gpu_memory_utilization} must be >= 1, >= 1 and in (0, 1]"
        )
    kv_per_token = model.kv_bytes_per_token // pp
    if model.kv_split_across_tp:
        kv_per_token //= tp
    return Budget(
        model=model,
        gpu=gpu,
        shape=shape,
        budget=int(gpu.memory_bytes * shape.gpu_memory_utilization),
        weights=model.weight_bytes // (tp * pp),
        reserve=model.reserve.total(enforce_eager=shape.enforce_eager),
        kv_per_token=kv_per_token,
    )


def check(model: ModelMemory, gpu: Gpu, shape: EngineShape, *, name: str) -> Budget:
    """The budget of `name`'s engine, or `BudgetError` saying what does not fit and what to change."""
    result = compute(model, gpu, shape)
    if shape.max_model_len > model.context_limit:
        raise BudgetError(
            f"{name}: max_model_len {shape.max_model_len:,} is longer than {model.source}'s "
            f"{model.context_limit:,}-token context"
        )
    batched = shape.max_num_batched_tokens
    if batched is None or batched > model.reserve.max_num_batched_tokens:
        raise BudgetError(
            f"{name}: set max_num_batched_tokens to at most {model.reserve.max_num_batched_tokens:,}: the "
            f"activation reserve of {model.source} is estimated for that (got {batched})"
        )
    if not result.fits:
        most = _largest_fitting_length(result)
        advice = (
            f"lower max_model_len to at most {most:,}"
            if most
            else "the weights and reserve alone exceed the budget"
        )
        raise BudgetError(
            f"{name}: does not fit: {result.explain()}; one full sequence needs "
            f"{_gib(shape.max_model_len * result.kv_per_token)} of KV cache. Fix: {advice}, or raise "
            f"tensor_parallel_size or gpu_memory_utilization"
        )
    return result


def _largest_fitting_length(result: Budget) -> int:
    return (result.kv_tokens // 1024) * 1024


def derive_max_model_len(model: ModelMemory, gpu: Gpu, shape: EngineShape, *, full_sequences: int) -> int:
    """The longest context that keeps `full_sequences` sequences of that length in the KV cache at once:
    the largest power of two <= min(context limit, KV capacity / full_sequences).

    `shape.max_model_len` is ignored (the capacity does not depend on it).
    """
    capacity = compute(model, gpu, shape).kv_tokens
    limit = min(model.context_limit, capacity // full_sequences)
    if limit < 1024:
        raise BudgetError(
            f"{model.source} on {gpu.name} holds only {capacity:,} KV tokens: not {full_sequences} "
            f"sequences of at least 1,024 tokens"
        )
    return 1 << (limit.bit_length() - 1)
