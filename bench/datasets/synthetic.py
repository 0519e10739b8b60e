"""Synthetic prompts: fixed or random lengths, made of common words that are one token in BPE vocabularies.

Each prompt starts with its own serial number so that no two share a prefix (a prefix cache would
otherwise make them unrealistically cheap). Lengths are in words; with the common words used here a
BPE tokenizer (Qwen, Llama, GPT) counts about one token per word, and the server's `usage` records
the exact count anyway.
"""

from __future__ import annotations

import random

from bench.datasets.prompts import Prompt

_COMMON = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were her she there one all we their has been would if more when will no out so "
    "up said what about into than them can only other new some time could these two may first then "
    "do any like my now over such our man me even most made after also did many before must through "
    "back years where much your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between both life being under "
    "never day same another know"
)
_WORDS = tuple(_COMMON.split())


def words(count: int, rng: random.Random, serial: int) -> str:
    """`count` words, the first being the serial number."""
    head = [f"{serial}"]
    return " ".join(head + [rng.choice(_WORDS) for _ in range(max(0, count - 1))])


def fixed_prompts(
    count: int, input_tokens: int, output_tokens: int | None, seed: int, tag: str = "fixed"
) -> list[Prompt]:
    """`count` prompts of exactly `input_tokens` words, each asking for `output_tokens`."""
    rng = random.Random(seed)
    return [
        Prompt(f"{tag}-{i}", words(input_tokens, rng, i), input_tokens, output_tokens) for i in range(count)
    ]


def random_prompts(
    count: int, input_tokens: int, output_tokens: int, seed: int, range_ratio: float = 0.5
) -> list[Prompt]:
    """`count` prompts whose input and output lengths are uniform in [n·(1−r), n·(1+r)] (vLLM's random)."""
    rng = random.Random(seed)
    prompts = []
    for i in range(count):
        n_in = rng.randint(
            max(1, int(input_tokens * (1 - range_ratio))), int(input_tokens * (1 + range_ratio))
        )
        n_out = rng.randint(
            max(1, int(output_tokens * (1 - range_ratio))), int(output_tokens * (1 + range_ratio))
        )
        prompts.append(Prompt(f"random-{i}", words(n_in, rng, i), n_in, n_out))
    return prompts
