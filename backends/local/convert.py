"""Convert a GGUF file to a Hugging Face model folder that vLLM can load (vLLM 0.32 cannot read GGUF).

Runs as a script in the engine's Python (it needs torch, transformers, gguf and accelerate, which
chatstack's own environment does not have), so it imports nothing from chatstack:

    <engine python> convert.py --gguf FILE --out DIR --sha256 HASH [--precision bf16|int4|int8]

`bf16` dequantises the weights to bfloat16. `int8` then quantises every linear layer of the decoder and
the output layer to int8, one scale per output row; `int4` quantises the decoder's linear layers to 4
bits, one bfloat16 scale and zero per 32 weights of a row (each group fitted again from the bf16 weights:
least squares over the scale, three zero points tried). Both are run by chatstack's vLLM plugin
(`quantised_linear.py`, whose docstring has the tensors' layout); the embedding table, norms and biases
stay bfloat16. The output is a function of the GGUF file only (fixed-order sums, no randomness), so its
hash can be pinned.

The folder is written beside `DIR` and renamed into place only when complete, with a marker
(`chatstack-model.json`) naming the GGUF hash it came from, the precision and the weights' SHA-256, so a
conversion that was interrupted is simply done again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MARKER = "chatstack-model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = 3
"""Bumped when a conversion's output changes, so older folders are converted again."""
GROUP_SIZE = 32
"""Weights per scale and zero point: Q4_K's sub-block, and the size the CPU kernel handles best here."""
_ROWS_PER_CHUNK = 64
"""Rows quantised at once: a few megabytes of float32, so the passes over them stay in the caches."""


def _pairwise_sum(t: Any) -> Any:
    """Sum over the last dimension (a power of two) in a fixed order, by elementwise additions only, so
    the result cannot depend on how a reduction kernel happens to be vectorised on this CPU."""
    while t.shape[-1] > 1:
        half = t.shape[-1] // 2
        t = t[..., :half] + t[..., half:]
    return t


def _to_bf16(t: Any) -> Any:
    import torch  # type: ignore[import-not-found]

    return t.to(torch.bfloat16).float()


def _fit_groups(x: Any) -> tuple[Any, Any, Any]:
    """(q, scale, zero) for groups `x` [..., G] (float32): w ~ (q - zero) * scale, with q and zero in
    0..15 and the scale a bfloat16 value. Starts from the groups' min and max, then for three zero
    points refits the scale by least squares (three rounds) and keeps the zero point with the least
    squared error."""
    import torch

    low = x.amin(-1, keepdim=True).clamp(max=0)
    high = x.amax(-1, keepdim=True).clamp(min=0)
    start = (high - low) / 15
    start = torch.where(start > 0, start, 1.0)
    zero0 = torch.round(-low / start)
    best: list[Any] | None = None
    for shift in (0.0, -1.0, 1.0):
        zero = (zero0 + shift).clamp(0, 15)
        scale = _to_bf16(start)
        scale = torch.where(scale > 0, scale, 1.0)
        for _ in range(3):
            d = (torch.round(x / scale) + zero).clamp_(0, 15).sub_(zero)
            num, den = _pairwise_sum(x * d), _pairwise_sum(d * d)
            fitted = _to_bf16(torch.where(den > 0, num / den, scale))
            scale = torch.where(fitted > 0, fitted, scale)
        q = (torch.round(x / scale) + zero).clamp_(0, 15)
        error = _pairwise_sum(((q - zero) * scale - x).square_())
        if best is None:
            best = [error, q, scale, zero]
        else:
            better = error < best[0]
            best = [
                torch.where(better, new, old) for new, old in zip((error, q, scale, zero), best, strict=True)
            ]
    assert best is not None
    return best[1], best[2], best[3]


def pack_int4(values: Any) -> Any:
    """[rows, cols] integers in 0..15 -> [rows, cols / 2] uint8: column 2j in the low nibble of byte j."""
    import torch

    pairs = values.to(torch.uint8).reshape(values.shape[0], -1, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).contiguous()


def unpack_int4(qweight: Any) -> Any:
    """[rows, cols / 2] uint8 -> [rows, cols] int32 values 0..15."""
    import torch

    return torch.stack((qweight & 0xF, qweight >> 4), dim=-1).reshape(qweight.shape[0], -1).to(torch.int32)


def quantize_int4(weight: Any, group_size: int = GROUP_SIZE) -> dict[str, Any]:
    """A linear layer's weight [out, in] as the `chatstack_int4` tensors: `qweight` [out, in/2] (uint8, two
    4-bit values to a byte), `scales` and `zeros` [out, in/G] (bfloat16), meaning (q - 8) * scale + zero
    (PyTorch's int4 CPU kernel's formula)."""
    import torch

    out_features, in_features = weight.shape
    if in_features % group_size or group_size & (group_size - 1):
        raise ValueError(f"cannot quantise a {tuple(weight.shape)} weight in groups of {group_size}")
    groups = in_features // group_size
    qs, scales, zeros = [], [], []
    for row in range(0, out_features, _ROWS_PER_CHUNK):
        x = weight[row : row + _ROWS_PER_CHUNK].float().reshape(-1, groups, group_size)
        q, scale, zero = _fit_groups(x)
        qs.append(q.reshape(-1, in_features))
        scales.append(scale.reshape(-1, groups))
        # (q - zero) * scale == (q - 8) * scale + (8 - zero) * scale
        zeros.append(((8 - zero) * scale).reshape(-1, groups))
    return {
        "qweight": pack_int4(torch.cat(qs)),
        "scales": torch.cat(scales).to(torch.bfloat16).contiguous(),
        "zeros": torch.cat(zeros).to(torch.bfloat16).contiguous(),
    }


def dequantize_int4(qweight: Any, scales: Any, zeros: Any) -> Any:
    """The weight [out, in] (float32) that int4 tensors stand for, as the kernel computes it."""
    q = unpack_int4(qweight).float().reshape(qweight.shape[0], scales.shape[1], -1)
    return ((q - 8) * scales.float()[..., None] + zeros.float()[..., None]).reshape(qweight.shape[0], -1)


def quantize_int8(weight: Any) -> dict[str, Any]:
    """A linear layer's weight [out, in] as `weight` int8 (symmetric) and one float32 `weight_scale` per
    output row [out, 1], for the `chatstack_int8` method (`quantised_linear.py`: activations stay bf16)."""
    import torch

    scale = weight.float().abs().amax(1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, 1.0)
    q = torch.round(weight.float() / scale).clamp_(-127, 127).to(torch.int8)
    return {"weight": q.contiguous(), "weight_scale": scale.contiguous()}


def dequantize_int8(weight: Any, weight_scale: Any) -> Any:
    return weight.float() * weight_scale.float()


def _restored(tensors: dict[str, Any]) -> Any:
    if "qweight" in tensors:
        return dequantize_int4(tensors["qweight"], tensors["scales"], tensors["zeros"])
    return dequantize_int8(tensors["weight"], tensors["weight_scale"])


def _relative_error(weight: Any, tensors: dict[str, Any]) -> float:
    reference = weight.double()
    restored = _restored(tensors).double()
    return float((restored - reference).norm() / reference.norm().clamp(min=1e-30))


QUANTISERS = {"int4": quantize_int4, "int8": quantize_int8}

QUANTIZATION_CONFIGS: dict[str, dict[str, Any]] = {
    # Both run by chatstack's vLLM plugin (quantised_linear.py) on PyTorch's CPU kernels.
    "int4": {"quant_method": "chatstack_int4", "group_size": GROUP_SIZE},
    "int8": {"quant_method": "chatstack_int8"},
}  # fmt: skip


def quantises_output_layer(model: Any, precision: str) -> bool:
    """int8 quantises the output layer too (a seventh of what bf16 reads per token; int4 keeps it, whose
    int4 error would show in every logit),
    unless it is tied to the embedding table, which must stay as it is (the 0.5B's is)."""
    return precision == "int8" and not getattr(model.config, "tie_word_embeddings", False)


def quantize_model(model: Any, precision: str, log: Any = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the quantised state dict, a summary of the per-layer relative error). Every `nn.Linear` in the
    decoder layers (for int8 the output layer too) is quantised, its bfloat16 weight released as it goes."""
    import torch

    # One thread: the work comes in small chunks (to stay in the caches), where a second thread costs more
    # in synchronisation than it brings (5x the CPU time for the same chunks, measured on two cores).
    torch.set_num_threads(1)
    quantise = QUANTISERS[precision]
    state: dict[str, Any] = {}
    errors: dict[str, float] = {}
    quantised: set[str] = set()
    started = time.monotonic()
    output_layer = quantises_output_layer(model, precision)
    layers = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and (".layers." in n or (output_layer and n == "lm_head"))
    ]
    for number, (name, module) in enumerate(layers, start=1):
        tensors = quantise(module.weight.data)
        errors[name] = round(_relative_error(module.weight.data, tensors), 5)
        state.update({f"{name}.{key}": value for key, value in tensors.items()})
        quantised.add(f"{name}.weight")
        module.weight.data = torch.empty(0, dtype=module.weight.dtype)  # release it now
        if number % 28 == 0 or number == len(layers):
            log(f"{precision}: {number}/{len(layers)} layers ({time.monotonic() - started:.0f} s)")
    for key, value in model.state_dict().items():
        if key not in quantised:
            state[key] = value.contiguous()
    values = sorted(errors.values())
    summary = {
        "layers": len(values),
        "relative_error_mean": round(sum(values) / len(values), 5) if values else 0.0,
        "relative_error_max": values[-1] if values else 0.0,
        "relative_error_max_layer": max(errors, key=errors.__getitem__) if errors else "",
    }
    return state, {"summary": summary, "layers": errors}


def weights_sha256(folder: Path) -> str:
    """SHA-256 of the folder's safetensors files, in name order (one file for the catalogue's models)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            while block := handle.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def convert(gguf: Path, out: Path, sha256: str, generation: dict[str, Any], precision: str = "bf16") -> None:
    # Only the engine's virtualenv has these (and mypy does not see it).
    import torch
    from safetensors.torch import save_file  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # type: ignore[import-not-found]

    started = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"converting {gguf.name} to {out} ({precision} safetensors)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    tokenizer.save_pretrained(partial)
    if generation:
        model.generation_config.update(**generation)
        # Qwen ends a turn with <|im_end|> but may also stop at <|endoftext|>: both must end a reply.
        model.generation_config.eos_token_id = sorted(
            {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        )
        model.generation_config.do_sample = True
    marker: dict[str, Any] = {"gguf_file": gguf.name, "gguf_sha256": sha256, "precision": precision}
    if precision in QUANTISERS:
        state, errors = quantize_model(model, precision, lambda line: print(line, flush=True))
        model.config.architectures = [type(model).__name__]  # save_pretrained would add it; vLLM needs it
        model.config.save_pretrained(partial)
        model.generation_config.save_pretrained(partial)
        config_path = partial / "config.json"
        config = json.loads(config_path.read_text())
        config["quantization_config"] = QUANTIZATION_CONFIGS[precision] | (
            {"lm_head": quantises_output_layer(model, precision)} if precision == "int8" else {}
        )
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        (partial / f"{precision}-errors.json").write_text(json.dumps(errors, indent=2) + "\n")
        marker[precision] = errors["summary"] | ({"group_size": GROUP_SIZE} if precision == "int4" else {})
        print(f"{precision} relative error per layer: {errors['summary']}", flush=True)
    else:
        model.save_pretrained(partial)
    marker["format"] = FORMAT
    marker["weights_sha256"] = weights_sha256(partial)
    (partial / MARKER).write_text(json.dumps(marker, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"converted in {time.monotonic() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sha256", required=True, help="the verified hash of the GGUF file, for the marker")
    parser.add_argument("--generation-config", default="{}", help="sampling defaults, as a JSON object")
    parser.add_argument("--precision", choices=("bf16", "int4", "int8"), default="bf16")
    args = parser.parse_args(argv)
    convert(
        args.gguf.resolve(),
        args.out.resolve(),
        args.sha256,
        json.loads(args.generation_config),
        args.precision,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
