"""A tiny Qwen2 GGUF file shaped like the catalogue's: Q4_K linear layers, F32 norms and biases, a Q8_0
output layer and a byte-level BPE tokenizer with Qwen's special tokens.

Runs in the engine's Python (it needs numpy and gguf, which chatstack's environment does not have):

    <engine python> tests/local/tiny_gguf.py OUT.gguf

Q4_K stores each run of 32 weights as `d * sc * q - dmin * m` (q in 0..15; sc and m 6-bit, d and dmin
fp16 per 256): the blocks are written byte by byte here (gguf-py can read Q4_K but not write it) and
checked against gguf-py's own dequantisation, so the converter meets the real layout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, dequantize, quantize  # type: ignore[import-not-found]

HIDDEN = 256  # Q4_K blocks are 256 weights along a row, so rows must be a multiple of it
INTERMEDIATE = 512
HEADS, KV_HEADS = 4, 2
LAYERS = 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet: one printable character per byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def q4_k_blocks(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw Q4_K bytes [rows, cols / 256 * 144], the float32 weights they stand for)."""
    blocks = rows * cols // 256
    d = (rng.uniform(0.5, 1.5, blocks) * 2e-3).astype(np.float16)
    dmin = (rng.uniform(0.5, 1.5, blocks) * 2e-3).astype(np.float16)
    sc = rng.integers(1, 64, (blocks, 8), dtype=np.uint8)
    m = rng.integers(0, 64, (blocks, 8), dtype=np.uint8)
    q = rng.integers(0, 16, (blocks, 8, 32), dtype=np.uint8)
    scales = np.zeros((blocks, 12), dtype=np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    # Each 32 bytes hold two sub-blocks: the low nibbles one, the high nibbles the next.
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(blocks, 128)
    raw = np.concatenate(
        [d.view(np.uint8).reshape(blocks, 2), dmin.view(np.uint8).reshape(blocks, 2), scales, qs], 1
    )
    weights = (
        d.astype(np.float32)[:, None, None] * sc[:, :, None] * q
        - dmin.astype(np.float32)[:, None, None] * m[:, :, None]
    )
    return raw.reshape(rows, -1), weights.reshape(rows, cols)


def write(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    tokens = byte_tokens()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    tokens += [m.replace(" ", "") for m in merges]
    tokens += SPECIAL
    vocab = len(tokens)
    writer = GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny qwen2")
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(INTERMEDIATE)
    writer.add_block_count(LAYERS)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(15)  # MOSTLY_Q4_K_M
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (vocab - len(SPECIAL)) + [3] * len(SPECIAL))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    def q4_k(name: str, rows: int, cols: int) -> None:
        raw, expected = q4_k_blocks(rng, rows, cols)
        assert np.allclose(dequantize(raw, GGMLQuantizationType.Q4_K), expected, rtol=0, atol=1e-6)
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=GGMLQuantizationType.Q4_K)

    def f32(name: str, values: np.ndarray) -> None:
        writer.add_tensor(name, values.astype(np.float32))

    head_dim = HIDDEN // HEADS
    q4_k("token_embd.weight", vocab, HIDDEN)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        f32(f"{block}.attn_norm.weight", rng.uniform(0.8, 1.2, HIDDEN))
        f32(f"{block}.ffn_norm.weight", rng.uniform(0.8, 1.2, HIDDEN))
        q4_k(f"{block}.attn_q.weight", HIDDEN, HIDDEN)
        q4_k(f"{block}.attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        q4_k(f"{block}.attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        f32(f"{block}.attn_q.bias", rng.normal(0, 0.1, HIDDEN))
        f32(f"{block}.attn_k.bias", rng.normal(0, 0.1, KV_HEADS * head_dim))
        f32(f"{block}.attn_v.bias", rng.normal(0, 0.1, KV_HEADS * head_dim))
        q4_k(f"{block}.attn_output.weight", HIDDEN, HIDDEN)
        q4_k(f"{block}.ffn_gate.weight", INTERMEDIATE, HIDDEN)
        q4_k(f"{block}.ffn_up.weight", INTERMEDIATE, HIDDEN)
        q4_k(f"{block}.ffn_down.weight", HIDDEN, INTERMEDIATE)
    f32("output_norm.weight", rng.uniform(0.8, 1.2, HIDDEN))
    # Large enough that the next-token distributions are peaked rather than flat.
    output = quantize(rng.normal(0, 0.1, (vocab, HIDDEN)).astype(np.float32), GGMLQuantizationType.Q8_0)
    writer.add_tensor("output.weight", output, raw_shape=output.shape, raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    write(Path(sys.argv[1]))
