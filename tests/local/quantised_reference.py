"""Load a quantised conversion with vLLM (chatstack's int4 or int8 layers) and compare it with what the
checkpoint means.

Runs in the engine's Python (vLLM, torch, transformers):

    <engine python> tests/local/quantised_reference.py QUANTISED_DIR BF16_DIR

Prints one line, `RESULT` and a JSON object: the log-probabilities of a fixed token sequence as vLLM
computes them from the quantised folder (`vllm`), as transformers computes them in float32 from the bf16
folder with every quantised weight replaced by the checkpoint's dequantised values (`reference`: what
the checkpoint means), and from the bf16 folder as it is (`bf16`: the GGUF's own weights).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TOKENS = [5, 40, 41, 72, 101, 33, 7, 200, 150, 66, 90, 12, 230, 18, 77, 140, 61, 99, 250, 3]


def vllm_logprobs(folder: Path) -> list[float]:
    from vllm import LLM, SamplingParams  # type: ignore[import-not-found]

    llm = LLM(model=str(folder), dtype="bfloat16", enforce_eager=True, max_model_len=128, max_num_seqs=1)
    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    [out] = llm.generate([{"prompt_token_ids": TOKENS}], params, use_tqdm=False)
    # Stop the engine's processes now, in order: left to the interpreter's exit, vLLM's clean-up sometimes
    # aborted ("terminate called without an active exception", int4 on a two-core AVX2 machine).
    llm.llm_engine.engine_core.shutdown()
    assert out.prompt_logprobs is not None
    return [entry[token].logprob for token, entry in zip(TOKENS[1:], out.prompt_logprobs[1:], strict=True)]


def transformers_logprobs(folder: Path, replace: dict[str, Any] | None = None) -> list[float]:
    import torch  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM  # type: ignore[import-not-found]

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for name, weight in (replace or {}).items():
            model.get_submodule(name).weight.copy_(weight)
        logits = model(torch.tensor([TOKENS])).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, -1)
    return [float(logprobs[i, token]) for i, token in enumerate(TOKENS[1:])]


def dequantised(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file  # type: ignore[import-not-found]

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backends" / "local"))
    from convert import dequantize_int4, dequantize_int8  # type: ignore[import-not-found]

    state = load_file(str(folder / "model.safetensors"))
    int4 = {key.removesuffix(".qweight") for key in state if key.endswith(".qweight")}
    int8 = {key.removesuffix(".weight_scale") for key in state if key.endswith(".weight_scale")}
    weights = {
        n: dequantize_int4(state[f"{n}.qweight"], state[f"{n}.scales"], state[f"{n}.zeros"]) for n in int4
    }
    weights |= {n: dequantize_int8(state[f"{n}.weight"], state[f"{n}.weight_scale"]) for n in int8}
    return weights


def main() -> None:
    quantised, bf16 = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    result = {
        "vllm": vllm_logprobs(quantised),
        "reference": transformers_logprobs(bf16, dequantised(quantised)),
        "bf16": transformers_logprobs(bf16),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":  # vLLM starts its engine in a spawned process, which imports this module
    main()
