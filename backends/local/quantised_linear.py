"""Quantised linear layers for vLLM on the CPU: the quantization methods `chatstack_int8` and
`chatstack_int4`, on PyTorch's own CPU kernels and one of chatstack's.

vLLM's quantised paths on the CPU need more than some CPUs have. Its int8 path (compressed-tensors W8A8,
oneDNN) decoded at 1 token/s on a CPU with AVX2 but no AVX-512, 5x slower than bf16; its int4 kernel
(`cpu_gemm_wna16`) is not even built for AVX2. PyTorch's weight-only kernels are vectorised for AVX2,
AVX-512 and Arm alike, and keep the activations in bf16:

- int8, a few rows at a time (decoding): chatstack's AVX2 kernel (`int8_decode.cpp`: activations as
  int16 in blocks of 32, exact integer dot products), 1.6x faster than PyTorch's
  `torch._weight_int8pack_mm`, which stays the fallback where the kernel cannot be built; many rows
  (prefill): the weights are dequantised to float32 a block of rows at a time, small enough to stay in
  the caches, and multiplied with float32 GEMM: 2x faster than the int8 kernel at 512 rows, and 7x
  faster than bf16 GEMM on a CPU without native bf16 (measured in docs/embedded-model.md);
- int4: `torch._weight_int4pack_mm_for_cpu` (a scale and a zero per 32 weights of a row) for any rows.

The checkpoint's tensors (convert.py writes them), per linear layer, all split along the output rows:
- int8: `weight` int8 [out, in], `weight_scale` float32 [out, 1]; w = weight * weight_scale;
- int4: `qweight` uint8 [out, in/2] (column 2j in the low nibble of byte j, 2j+1 in the high one),
  `scales` and `zeros` bf16 [out, in/32]; w = (q - 8) * scale + zero, the kernel's own formula.

Runs inside the engine process (it imports vLLM); the `vllm.general_plugins` entry point `chatstack_quant`
calls `register` in every engine process before the model is loaded.
"""

from __future__ import annotations

from typing import Any

import torch  # type: ignore[import-not-found]
from vllm.model_executor.layers.linear import (  # type: ignore[import-not-found]
    LinearBase,
    LinearMethodBase,
    register_weight_loader_v2_supported_method,
)
from vllm.model_executor.layers.quantization import (  # type: ignore[import-not-found]
    register_quantization_config,
)
from vllm.model_executor.layers.quantization.base_config import (  # type: ignore[import-not-found]
    QuantizationConfig,
)
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead  # type: ignore[import-not-found]
from vllm.model_executor.parameter import ModelWeightParameter  # type: ignore[import-not-found]

from backends.local.convert import GROUP_SIZE as INT4_GROUP
from backends.local.convert import unpack_int4
from backends.local.int8_decode import BLOCK as KERNEL_BLOCK
from backends.local.int8_decode import Kernel, decode_kernel

GEMM_FROM_ROWS = 48
"""From this many rows on, dequantise-and-GEMM beats the int8 kernel (equal at 32 rows, 1.3x at 64)."""
DEQUANT_BLOCK = 256
"""Weight rows dequantised at once: 256 x 8,960 float32 is 9 MB, which stays in a 32 MB L3 cache."""


def int8_matmul(x: Any, weight: Any, scale: Any, scale_f32: Any, kernel: Kernel | None = None) -> Any:
    """`x @ (weight * scale).T` for `x` [M, K], `weight` [N, K] int8, `scale` [N] in `x`'s dtype
    (`scale_f32` the same in float32); `kernel` for a few rows, when the layer has one (`decode_kernel`)."""
    if x.shape[0] < GEMM_FROM_ROWS:
        if kernel is not None:
            return kernel(x, weight, scale_f32)
        return torch._weight_int8pack_mm(x, weight, scale)
    x32 = x.float()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype)
    for start in range(0, weight.shape[0], DEQUANT_BLOCK):
        rows = slice(start, start + DEQUANT_BLOCK)
        out[:, rows] = torch.mm(x32, weight[rows].float().mul_(scale_f32[rows, None]).t())
    return out


def int4_matmul(x: Any, packed: Any, scales_and_zeros: Any) -> Any:
    """`x @ W.T` for the int4 weight W, in the kernel's layout, whatever the rows: a float32 copy for the
    GEMM path would need the plain 4-bit values beside the kernel's, giving back the memory int4 is for
    (the kernel prefills 3 to 4x slower than int8's GEMM path, still faster than bf16 without AVX-512)."""
    return torch._weight_int4pack_mm_for_cpu(x, packed, INT4_GROUP, scales_and_zeros)


class _Config(QuantizationConfig):  # type: ignore[misc]
    name = ""

    def __init__(self, lm_head: bool) -> None:
        super().__init__()
        self.lm_head = lm_head

    @classmethod
    def get_name(cls) -> str:
        return cls.name

    @classmethod
    def get_supported_act_dtypes(cls) -> list[Any]:
        return [torch.bfloat16]

    @classmethod
    def get_min_capability(cls) -> int:
        return 0  # a CPU method: no GPU capability needed

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> _Config:
        return cls(lm_head=bool(config.get("lm_head", False)))

    def get_quant_method(self, layer: Any, prefix: str) -> LinearMethodBase | None:
        if isinstance(layer, ParallelLMHead) and not self.lm_head:
            return None
        if isinstance(layer, (LinearBase, ParallelLMHead)):
            return self.method()
        return None  # embeddings and the rest stay as the checkpoint has them

    def method(self) -> LinearMethodBase:
        raise NotImplementedError


def _replace(layer: Any, name: str, data: Any) -> None:
    setattr(layer, name, torch.nn.Parameter(data, requires_grad=False))


class _QuantisedLinearMethod(LinearMethodBase):  # type: ignore[misc]
    """What both methods share: the checkpoint's tensors are split along the output rows (so merged
    layers such as qkv load as they are) and the layer is `x @ W.T (+ bias)` on 2-D rows."""

    def tensors(self, rows: int, columns: int) -> dict[str, tuple[tuple[int, int], Any]]:
        """The checkpoint's tensors for a layer: name -> (shape, dtype)."""
        raise NotImplementedError

    def matmul(self, layer: Any, x: Any) -> Any:
        raise NotImplementedError

    def create_weights(
        self,
        layer: Any,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: Any,
        **extra_weight_attrs: Any,
    ) -> None:
        layer.logical_widths = output_partition_sizes
        loader = extra_weight_attrs.get("weight_loader")
        for name, (shape, dtype) in self.tensors(
            sum(output_partition_sizes), input_size_per_partition
        ).items():
            data = torch.empty(shape, dtype=dtype)
            layer.register_parameter(
                name, ModelWeightParameter(data=data, input_dim=1, output_dim=0, weight_loader=loader)
            )

    def apply(self, layer: Any, x: Any, bias: Any = None) -> Any:
        out = self.matmul(layer, x.reshape(-1, x.shape[-1]).contiguous())
        if bias is not None:
            out += bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


@register_weight_loader_v2_supported_method
class Int8LinearMethod(_QuantisedLinearMethod):
    def tensors(self, rows: int, columns: int) -> dict[str, tuple[tuple[int, int], Any]]:
        return {"weight": ((rows, columns), torch.int8), "weight_scale": ((rows, 1), torch.float32)}

    def process_weights_after_loading(self, layer: Any) -> None:
        scale = layer.weight_scale.data.reshape(-1).float()
        _replace(layer, "weight", layer.weight.data.contiguous())
        _replace(layer, "weight_scale", scale)
        _replace(layer, "weight_scale_bf16", scale.to(torch.bfloat16))  # the kernel's scale dtype
        # Chosen (and built, once per process) while the model loads, not on each call.
        fits = layer.weight.shape[1] % KERNEL_BLOCK == 0
        layer.decode_kernel = decode_kernel() if fits else None

    def matmul(self, layer: Any, x: Any) -> Any:
        return int8_matmul(x, layer.weight, layer.weight_scale_bf16, layer.weight_scale, layer.decode_kernel)


@register_weight_loader_v2_supported_method
class Int4LinearMethod(_QuantisedLinearMethod):
    def tensors(self, rows: int, columns: int) -> dict[str, tuple[tuple[int, int], Any]]:
        if columns % INT4_GROUP:
            raise ValueError(f"chatstack_int4 needs input sizes in multiples of {INT4_GROUP}, not {columns}")
        groups = (rows, columns // INT4_GROUP)
        return {
            "qweight": ((rows, columns // 2), torch.uint8),
            "scales": (groups, torch.bfloat16),
            "zeros": (groups, torch.bfloat16),
        }

    def process_weights_after_loading(self, layer: Any) -> None:
        packed = torch._convert_weight_to_int4pack_for_cpu(unpack_int4(layer.qweight.data), 1)
        pairs = torch.stack((layer.scales.data, layer.zeros.data), dim=-1).transpose(0, 1).contiguous()
        _replace(layer, "packed", packed)
        _replace(layer, "scales_and_zeros", pairs)  # [in/32, out, 2], as the kernel wants it
        for name in ("qweight", "scales", "zeros"):  # the kernel's copies replace them
            delattr(layer, name)

    def matmul(self, layer: Any, x: Any) -> Any:
        return int4_matmul(x, layer.packed, layer.scales_and_zeros)


class Int8Config(_Config):
    """`{"quant_method": "chatstack_int8", "lm_head": true}` in a model's config.json."""

    name = "chatstack_int8"

    def method(self) -> LinearMethodBase:
        return Int8LinearMethod()


class Int4Config(_Config):
    """`{"quant_method": "chatstack_int4", "group_size": 32}` in a model's config.json."""

    name = "chatstack_int4"

    def method(self) -> LinearMethodBase:
        return Int4LinearMethod()


def register() -> None:
    """The `vllm.general_plugins` entry point (vLLM may call it more than once; registering again only
    replaces the entry with the same class)."""
    for config in (Int8Config, Int4Config):
        register_quantization_config(config.name)(config)
