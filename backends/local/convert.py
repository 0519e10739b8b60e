"""Convert a GGUF file to a Hugging Face model folder that vLLM can load (vLLM 0.32 cannot read GGUF).

Runs as a script in the engine's Python (it needs torch, transformers, gguf and accelerate, which
chatstack's own environment does not have), so it imports nothing from chatstack:

    <engine python> convert.py --gguf FILE --out DIR --sha256 HASH

The weights are dequantised to bfloat16 once. The folder is written beside `DIR` and renamed into place
only when complete, with a marker (`chatstack-model.json`) naming the GGUF hash it came from, so a
conversion that was interrupted is simply done again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

MARKER = "chatstack-model.json"


def convert(gguf: Path, out: Path, sha256: str, generation: dict[str, Any]) -> None:
    # Only the engine's virtualenv has these (and mypy does not see it).
    import torch  # type: ignore[import-not-found]
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # type: ignore[import-not-found]

    started = time.monotonic()
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    print(f"converting {gguf.name} to {out} (bfloat16 safetensors)", flush=True)
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
    model.save_pretrained(partial)
    (partial / MARKER).write_text(json.dumps({"gguf_file": gguf.name, "gguf_sha256": sha256}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"converted in {time.monotonic() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sha256", required=True, help="the verified hash of the GGUF file, for the marker")
    parser.add_argument("--generation-config", default="{}", help="sampling defaults, as a JSON object")
    args = parser.parse_args(argv)
    convert(args.gguf.resolve(), args.out.resolve(), args.sha256, json.loads(args.generation_config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
